"""CPU time per process from ``/proc``: what one execution costs, summed over every process."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its threads (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """CPU seconds spent by named processes between :meth:`start` and :meth:`stop`.

    ``pids`` maps a label (``coordinator``, ``nats-server``, ``load-generator``) to the process ids
    under it; replicas of one worker share a label."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.before: dict[int, float] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> "CpuMeter":
        self.before = {pid: cpu_s(pid) for pids in self.pids.values() for pid in pids}
        return self

    def stop(self) -> dict[str, float]:
        self.spent = {label: sum(max(0.0, cpu_s(pid) - self.before.get(pid, 0.0)) for pid in pids) for label, pids in self.pids.items()}
        return self.spent

    def per_unit_ms(self, units: int) -> dict[str, float]:
        """Milliseconds of CPU per unit of work (an execution), by label, largest first."""
        if units <= 0:
            return {}
        rows = {label: round(s * 1000 / units, 2) for label, s in self.spent.items()}
        return dict(sorted(rows.items(), key=lambda kv: -kv[1]))
