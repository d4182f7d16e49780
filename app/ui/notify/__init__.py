"""Telling the user: notifications through the desktop, the tray and
in-window toasts, their history and their settings."""
