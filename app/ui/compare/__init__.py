"""The compare window: several runs' curves, legend, parameter
differences and statistics side by side."""
