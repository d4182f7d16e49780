"""What runs produce: consoles and metric points tailed from the hosts
into the store, exactly once, and read back decimated."""
