"""Runners of the built-in step types, executed inside step Jobs (``headwater step <type>``)."""
