"""How commands reach a worker: SSH connections and their check shells (ssh), host keys
(hostkeys), running a step over SSH or on the server itself (remote, local).
"""
