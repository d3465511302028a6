"""ft-train."""
