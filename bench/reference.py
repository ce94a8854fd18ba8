"""The reference ceiling: ``../shared/bench/jetstream_limit.py --reference`` (the tuned 6-process
chain: a continuous pull, ``publish_async``, no logic), run in the same invocation as the bench so
every ratio is taken back to back on the same machine. ``bench/jetstream_limit.py`` is an identical
copy (a test keeps it identical) used when ``../shared`` is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bus.server import free_port

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "bench" / "jetstream_limit.py"
COPY = Path(__file__).resolve().parent / "jetstream_limit.py"


def script() -> Path:
    return SHARED if SHARED.is_file() else COPY


def run_reference(reps: int = 3, timeout: float = 600.0) -> dict:
    """``ref_chain_per_s`` (median of ``reps`` bursts), ``ref_chain_200_p50_ms``/``_p99_ms``."""
    path = script()
    res = subprocess.run(
        [sys.executable, str(path), "--reference", "--port", str(free_port()), "--reps", str(reps)],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"reference chain failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    out = json.loads(lines[-1])
    out["ref_chain_source"] = "../shared/bench/jetstream_limit.py" if path == SHARED else "bench/jetstream_limit.py (copy)"
    return out
