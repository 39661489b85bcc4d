"""Files in and out: labelled data (JSON Lines, CSV, datasets) and the exported best-prompt config."""
