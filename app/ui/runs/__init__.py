"""The runs table: its model over the core's catalog, filters, columns,
formats and the actions on selected runs."""
