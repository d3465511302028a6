"""ft-infer."""
