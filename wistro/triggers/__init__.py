"""Triggers: what starts work from outside (HTTP endpoints, cron schedules)."""
