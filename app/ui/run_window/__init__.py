"""One run's window: live curves, console, parameters and export."""
