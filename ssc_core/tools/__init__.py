"""Command-line tools (``python -m ssc_core.tools.<name>``)."""
