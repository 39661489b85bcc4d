"""Putting a saved model to work: load it and label new rows, one by one or a whole file."""
