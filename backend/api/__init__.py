"""The HTTP API that the console and the command line talk to."""

# Registers the {name:name} path convertor before any route module compiles its paths.
from backend.api import names  # noqa: F401
