"""Every Python example in docs/client.md runs, in order, against a real `jetexec up` (its asserts
are part of the documentation: they say what the example shows)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import Up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_document_has_examples_of_every_method_it_promises():
    text = "\n".join(EXAMPLES)
    assert len(EXAMPLES) >= 5
    for call in ("jx.submit(", "jx.wait(", "jx.submit_batch(", "jx.watch_records()", "jx.escape_and_report(", "jx.positions()", "jx.symbols()", "jx.safety()"):
        assert call in text, call


def test_every_example_runs(tmp_path):
    with Up(tmp_path) as up:
        env = {**os.environ, "JETEXEC_NATS_URL": up.url}
        for i, code in enumerate(EXAMPLES):
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, env=env, cwd=tmp_path)
            assert res.returncode == 0, f"example {i + 1} of docs/client.md failed:\n{code}\n{res.stderr.decode()[-3000:]}"
            assert res.stdout.strip(), f"example {i + 1} printed nothing"
