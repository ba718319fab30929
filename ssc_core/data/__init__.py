"""Data: readers of the on-disk formats and built-in samples."""
