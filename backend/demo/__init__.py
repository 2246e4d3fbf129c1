"""The demo: a fleet of real SSH workers on loopback ports, served by the demo server
itself (fleet), the small SSH server each of them is (sshd; the tests use it too), and
the demo's runbooks (runbooks/)."""
