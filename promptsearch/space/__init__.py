"""The search space: YAML schema, dimensions, template language, validated space, sampling, and the key
reference generated from the schema (`reference`; no torch)."""
