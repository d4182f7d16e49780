"""Curves and what goes with them, shared by the run window, the compare window and
the cluster view's GPU use: the plot panels, axes and themes, their controls, the
series data and tables, and export to SVG, PNG and CSV."""
