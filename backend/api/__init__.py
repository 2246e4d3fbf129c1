"""The HTTP API that the console and the command line talk to."""
