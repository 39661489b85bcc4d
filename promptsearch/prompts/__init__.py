"""Prompt text: demonstration selection and rendering a trial's prompts (no torch here)."""
