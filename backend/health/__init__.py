"""Health checks: scheduling them (checker), storing and publishing what they found
(results), what a check runs on a worker and how its output is judged (probe), the
long-lived shell it runs in (checkshell).
"""
