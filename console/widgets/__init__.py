"""Widgets shared by the console's views."""
