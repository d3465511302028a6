"""ft-score."""
