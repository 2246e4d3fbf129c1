"""What the server and its clients share: the log chunk codec and the constants both
sides need. It imports neither the store nor the web framework, so that a client
command starts in a fraction of a second."""
