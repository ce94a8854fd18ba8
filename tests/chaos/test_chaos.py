"""The chaos suite at CI size: workers (every kind) SIGKILLed and nats-server restarted on the same
data directory under load; nothing lost, nothing duplicated. The full run is `jetexec chaos`."""

import pytest

from bench.chaos import SMALL, run_chaos

pytestmark = pytest.mark.e2e


async def test_chaos_small(tmp_path):
    report = await run_chaos(SMALL, workdir=tmp_path)
    print(report.render())
    assert len([k for k in report.kills if k != "nats-server"]) == SMALL.kills
    assert "nats-server" in report.kills
    failed = [c for c in report.checks if not c.ok]
    assert not failed, report.render()
