"""The search space: YAML schema, dimensions, template language, validated space, sampling (no torch)."""
