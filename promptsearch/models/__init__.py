"""Models: loading, heads, encoding prompts to tensors, training, calibration, metrics and devices."""
