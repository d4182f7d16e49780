"""Everything that imports Qt: windows, widgets, dialogs and the bridge from the core."""
