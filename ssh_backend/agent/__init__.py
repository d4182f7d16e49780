"""Files shipped to and run on a host (stdlib-only Python >= 3.8), not imported by the app.

The modules import each other as top-level siblings (``import wire``) because on a host
they run as a flat folder; this file only makes the folder package data for installers.
"""
