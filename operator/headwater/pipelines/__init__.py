"""Pipelines: their status and schedules (pure), and the scheduler that acts on them."""
