"""Submitting runs: the submit dialog (scripts, folders, job files,
sweeps) and dropping files onto the window."""
