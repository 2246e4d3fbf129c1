"""Notifications: what happens, told where a team already looks (webhooks, Slack)."""
