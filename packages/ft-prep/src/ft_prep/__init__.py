"""ft-prep."""
