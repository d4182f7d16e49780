"""The queue: run records and their store, placement (free GPUs, fair
share, reservations), and the dispatcher that launches, follows and
reconciles runs on their hosts."""
