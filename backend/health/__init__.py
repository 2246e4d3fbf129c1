"""Health checks: scheduling and recording them (checker), what a check runs on a
worker and how its output is judged (probe), the long-lived shell it runs in (checkshell).
"""
