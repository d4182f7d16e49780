"""The hosts: their registry (names, addresses, ssh aliases), the live
monitor of every host and its GPUs, and what is checked of what they say."""
