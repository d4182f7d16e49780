"""What a run is asked to do: job specs and job files, parameters and
sweeps, code snapshots, secrets, and whether it could ever start."""
