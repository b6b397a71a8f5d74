"""Freshness SLAs: verdicts and incidents (pure), and the monitor that applies them."""
