"""Numbers the server and its clients must agree on."""

HISTORY_S = 600  # the utilization history a pool's snapshot carries, and a console shows
