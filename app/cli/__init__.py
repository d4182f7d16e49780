"""The ``labdeck`` command line: host registry and lab snapshots over ``app.core``.

Nothing here imports Qt; the GUI and its self-test are imported only when asked for.
"""
