"""Labdeck: a desktop control deck for a lab's GPU workstations."""

__version__ = "0.1.0"
APP_ID = "org.labdeck.Labdeck"
