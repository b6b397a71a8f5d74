"""The headwater command and kubectl plugin."""
