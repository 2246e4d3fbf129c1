"""The console's views, one module each, and the modal dialogs they share."""
