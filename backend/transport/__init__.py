"""How commands reach a worker: one way in for checks, steps and the reaper (reach), one
SSH connection and its check shell (ssh), the pool of them, one per worker
(connections), host keys (hostkeys), running a step over SSH or on the server itself
(remote, local).
"""
