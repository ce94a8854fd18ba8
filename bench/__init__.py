"""``jetexec bench``: measured figures for the bus ceiling, throughput, latency and the escape lane."""
