"""Workdeck's clients: the Textual console and the command line."""
