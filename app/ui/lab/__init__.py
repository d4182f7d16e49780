"""The Lab page: the lab at a glance from the hosts' lab boards."""
