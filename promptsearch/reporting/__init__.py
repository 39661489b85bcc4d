"""What a study shows: report.md/json/html, figures, progress, preview and experiment tracking."""
