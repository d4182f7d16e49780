"""The window's frame: the application, the main window and its tabs, the
composition of the features over one Lab, theme, remembered layout, the
single-instance hand-over, the crash dialog and the offscreen self-test."""
