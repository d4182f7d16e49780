"""Metric points read out of console lines (built-in reading and per-job
patterns) and the byte-stream splitter."""
