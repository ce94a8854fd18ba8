"""What an operator meets in the first hour (issue 14), end to end against `jetexec up`: output one can
act on, exit codes for scripts, the configuration checked at start-up, the live view."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bus.server import EmbeddedServer, free_port
from tests.e2e.harness import Up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("JETEXEC_")} | {"PYTHONUNBUFFERED": "1"}
CID = re.compile(r"\bx[0-9a-f]{23}\b")


def jetexec(*args: str, env: dict | None = None, input: bytes | None = None, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "jetexec.cli", *args], input=input, capture_output=True, timeout=timeout, env={**CLEAN_ENV, **(env or {})}, cwd=cwd or REPO)


def one_line(res: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    err = res.stderr.decode(errors="replace")
    assert res.returncode == code, (res.returncode, err, res.stdout[-500:])
    assert "Traceback" not in err + res.stdout.decode(errors="replace")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with Up(tmp_path_factory.mktemp("operator")) as up:
        yield up


def intent(key: str, **over) -> dict:
    return {"symbol": "AAPL", "side": "BUY", "qty": 5, "strategy_id": "operator", "client_key": key, **over}


def lines_of(*intents: dict) -> bytes:
    return b"\n".join(json.dumps(i).encode() for i in intents) + b"\n"


# ---- 2. configuration: checked at start-up, one clear error, a dying worker is visible --------


def test_a_bad_limit_fails_up_at_once_naming_the_key_and_the_value(tmp_path):
    started = time.monotonic()
    res = jetexec("up", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()), env={"JETEXEC_PRECHECK_CONFIG": '{"daily_trade_limit": "lots"}'})
    one_line(res, 2, "invalid configuration", 'risk.daily_trade_limit = "lots"', "JETEXEC_PRECHECK_CONFIG")
    assert time.monotonic() - started < 15  # not 60 s of silence
    assert not (tmp_path / "d").exists()  # nothing was started
    toml = tmp_path / "jetexec.toml"
    toml.write_text("[risk.strategies.s1]\ndaily_trade_limit = -1\n")
    one_line(jetexec("up", "--config", str(toml)), 2, "risk.strategies.s1.daily_trade_limit = -1", str(toml))
    one_line(jetexec("config", "check", "--config", str(toml)), 2, "risk.strategies.s1.daily_trade_limit")


def test_config_show_masks_secrets_and_says_where_values_came_from(tmp_path):
    toml = tmp_path / "jetexec.toml"
    toml.write_text('[risk]\ndaily_trade_limit = 7\n[nats]\npassword = "hunter2"\n')
    res = jetexec("config", "show", "--sources", env={"JETEXEC__RISK__PRICE_COLLAR_PCT": "0.02", "JETEXEC_NATS_TOKEN": "t0k3n"}, cwd=tmp_path)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr
    assert "hunter2" not in out and "t0k3n" not in out and 'password = "***"' in out
    assert "daily_trade_limit = 7" in out and 'price_collar_pct = "0.02"' in out
    assert "risk.price_collar_pct = JETEXEC__RISK__PRICE_COLLAR_PCT" in out and "risk.daily_trade_limit = jetexec.toml" in out
    env = json.loads(jetexec("config", "env", "--json", cwd=tmp_path).stdout)
    assert json.loads(env["JETEXEC_PRECHECK_CONFIG"])["daily_trade_limit"] == 7


def test_a_worker_that_dies_during_start_up_makes_up_fail_with_its_last_words(tmp_path):
    """The paper exchange (worker 0) cannot bind its metrics port: `up` restarts it visibly, then fails."""
    base = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base))
    blocker.listen()
    try:
        started = time.monotonic()
        res = jetexec("up", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()), env={"JETEXEC_METRICS_PORT_BASE": str(base), "JETEXEC_METRICS_HOST": "127.0.0.1"}, timeout=120)
    finally:
        blocker.close()
    err = res.stderr.decode()
    assert res.returncode == 1, (res.returncode, err)
    assert time.monotonic() - started < 60
    assert "Traceback" not in err
    assert err.count("worker paper-exchange exited during start-up") >= 2  # each restart is said
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: start-up failed: worker paper-exchange exited during start-up 3 times"), last
    assert "address already in use" in last.lower() and "paper-exchange-0.log" in last


# ---- 3. live mode with no live venue refuses ---------------------------------------------------


def test_live_mode_without_a_live_venue_refuses_to_start(tmp_path):
    res = jetexec("up", "--mode", "live", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()), env={"JETEXEC_LIVE_ENABLED": "yes"})
    line = one_line(res, 2, "live mode needs a live venue", "paper (paper)")
    assert "simulated" in line
    assert not (tmp_path / "d").exists()


# ---- 1. output one can act on ------------------------------------------------------------------


def test_full_ids_that_status_accepts_and_the_detail_and_children(system):
    collared = intent("collar", order_type="LIMIT", price="100", symbol="TSLA")  # 60 % off: PRICE_COLLAR
    twap = intent("twap-kids", qty=30, split="TWAP", horizon_s=1)
    res = system.cli("submit", "-", "--wait", input=lines_of(collared, twap))
    assert res.returncode == 0, res.stderr
    table = res.stdout.decode()
    ids = CID.findall(table)
    assert len(ids) == 2, table  # full 24-character ids, not "x525dc9ad49…"
    assert "…" not in table
    assert "PRICE_COLLAR" in table and "collar 5%" in table  # the detail, not only the code
    shown = system.cli("status", ids[0])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "PRICE_COLLAR" in text and "from reference" in text and "BUY 5 TSLA @ 100.00" in text
    kids = system.cli("status", ids[1]).stdout.decode()
    assert "child orders" in kids and len(re.findall(r"c[0-9a-f]{16}-\d\d-\d", kids)) >= 2


def test_a_receipt_describes_the_order_it_accepted(system):
    limit = intent("receipt", order_type="LIMIT", price="150.5")
    rows = system.submit_nowait([limit])
    assert rows[0]["state"] == "INIT" and rows[0]["symbol"] == "AAPL" and rows[0]["side"] == "BUY" and rows[0]["qty"] == "5"
    assert rows[0]["price"] == "150.5" and rows[0]["order_type"] == "LIMIT" and rows[0]["strategy_id"] == "operator"
    assert rows[0]["created_at"] > 1e9
    human = system.cli("submit", "-", input=lines_of(limit)).stdout.decode()
    assert "BUY 5 AAPL @ 150.50" in human and "(invalid intent)" not in human


# ---- 5. exit codes -----------------------------------------------------------------------------


def test_exit_codes_for_scripts(system):
    slow = intent("slow", qty=20, split="TWAP", horizon_s=20)
    res = system.cli("submit", "-", "--wait", "--json", "--timeout", "1", input=lines_of(slow))
    assert res.returncode == 4, res.stderr
    assert "timed out after 1 s: 1 of 1 executions not terminal" in res.stderr.decode()
    assert json.loads(res.stdout)["state"] in ("SPLITTING", "SENDING", "MONITORING")  # the rows are still printed
    cid = json.loads(res.stdout)["correlation_id"]

    bad = intent("failing", order_type="LIMIT", price="1", symbol="TSLA")
    assert system.cli("submit", "-", "--wait", input=lines_of(bad)).returncode == 0  # FAILED is a result, not an error
    one_line(system.cli("submit", "-", "--wait", "--fail-on", "FAILED,ESCAPED", input=lines_of(bad)), 5, "1 of 1 executions ESCAPED/FAILED")

    one_line(system.cli("status", "x" + "0" * 23), 6, "no execution")
    res = system.cli("escape", "xdoesnotexist123", cid)
    assert res.returncode == 6, res.stderr
    out = res.stdout.decode()
    assert "xdoesnotexist123: no such execution — nothing sent" in out
    assert f"{cid}: " in out and "cancelled" in out and re.search(r"c[0-9a-f]{16}-\d\d-\d\s+\S+ of \S+ unfilled", out), out
    assert res.stderr.decode().strip() == "error: no execution xdoesnotexist123"
    outcome = json.loads(system.cli("escape", cid, "--json").stdout)
    assert outcome["found"] and outcome["state"] == "ESCAPED" and outcome["state_before"] == "ESCAPED"


def test_cannot_connect_and_no_topology_are_distinct_one_line_errors(tmp_path):
    one_line(jetexec("status", "x" + "0" * 23, "--nats-url", f"nats://127.0.0.1:{free_port()}"), 7, "cannot connect to NATS at nats://127.0.0.1:")
    one_line(jetexec("status", "x" + "0" * 23, "--nats-url", "garbage://nope"), 2, "invalid NATS URL 'garbage://nope'")
    bare = EmbeddedServer(tmp_path / "bare", port=free_port()).start()  # JetStream, but never provisioned
    try:
        for args in (("status", "x" + "0" * 23), ("halt",), ("executions",), ("watch", "--once")):
            one_line(jetexec(*args, "--nats-url", bare.url), 7, "no jetexec topology", "jetexec provision")
    finally:
        bare.stop()


def test_ids_are_checked_before_they_become_subjects(system):
    for args in (("audit", "--correlation-id", "bad id"), ("ledger", "orders", "--correlation-id", "a.b"), ("report", "a*b"), ("recon", "--correlation-id", "x y")):
        one_line(system.cli(*args), 2, "is not a correlation id")


# ---- 6. formatting ---------------------------------------------------------------------------


def test_decimals_are_rounded_for_people_and_exact_in_json(system):
    rows = system.submit([intent(f"avg-{i}", qty=7 + i, strategy_id="avg") for i in range(3)])
    assert all(r["state"] == "COMPLETE" for r in rows)
    human = system.cli("ledger", "positions").stdout.decode()
    row = next(line for line in human.splitlines() if " avg " in line)
    numbers = re.findall(r"-?\d+\.\d+", row)
    assert numbers and all(len(n.split(".")[1]) <= 2 for n in numbers), row  # AAPL's tick is 0.01, money in cents
    exact = next(p for p in map(json.loads, system.cli("ledger", "positions", "--json").stdout.decode().splitlines()) if p["strategy_id"] == "avg")
    notional = sum(float(r["avg_fill_price"]) * float(r["filled_qty"]) for r in rows)
    assert abs(float(exact["avg_entry_price"]) * 24 - notional) < 1e-6  # the JSON keeps every digit
    refused = system.submit([intent("exp", qty="1e3")])[0]
    assert refused["state"] == "FAILED" and refused["reason_code"] == "VALIDATION_INVALID_QUANTITY" and "exponent" in refused["detail"]
    typo = system.submit([intent("typo", urgncy="HIGH")])[0]
    assert typo["reason_code"] == "VALIDATION_INVALID_FIELD" and "did you mean 'urgency'" in typo["detail"]


def test_tables_on_a_pipe_are_not_cut_to_80_columns(system):
    res = system.cli("executions", "--limit", "5")  # stdout is a pipe, COLUMNS is not set
    text = res.stdout.decode()
    assert res.returncode == 0 and "…" not in text
    header = next(line for line in text.splitlines() if "correlation_id" in line)
    assert "reason / alerts / detail" in header and len(CID.findall(text)) == 5


def test_nothing_is_printed_after_a_broken_pipe(system):
    # More output than a pipe buffers (64 KiB), so the writer really meets the closed pipe.
    for batch in range(10):
        if len(system.cli("audit", "--json").stdout) > 200_000:
            break
        system.submit([intent(f"pipe-{batch}-{i}", qty=1, strategy_id="pipe") for i in range(40)])
    assert len(system.cli("audit", "--json").stdout) > 200_000
    err = Path(system.tmp) / "pipe.err"
    script = f"{PY} -m jetexec.cli audit --json --nats-url {system.url} 2>{err} | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    res = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60, env=CLEAN_ENV)
    assert res.stdout.decode().strip() == "141", (res.stdout, err.read_text())
    assert err.read_text() == ""


# ---- 4. the live view, the list, the progress bar ----------------------------------------------


def test_watch_once_shows_executions_fills_and_the_safety_state(system):
    system.submit([intent("watch-a", strategy_id="watch-a"), intent("watch-b", strategy_id="watch-b", symbol="MSFT")])
    res = system.cli("watch", "--once", "--strategy", "watch-a")
    text = res.stdout.decode()
    assert res.returncode == 0, res.stderr
    assert "safety NORMAL" in text and "mode PAPER" in text and "halts none" in text
    assert "watch-a" in text and "watch-b" not in text and "filter strategy=watch-a" in text
    try:
        assert system.cli("halt").returncode == 0
        assert "safety LOCKDOWN" in system.cli("watch", "--once", "--state", "FAILED").stdout.decode()
    finally:
        assert system.cli("resume").returncode == 0
    tail = subprocess.Popen([PY, "-m", "jetexec.cli", "watch", "--json", "--strategy", "watch-tail", "--nats-url", system.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV)
    try:
        seen: list[dict] = []
        def read() -> None:
            for line in tail.stdout:
                seen.append(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        system.submit([intent("watch-tail", strategy_id="watch-tail")])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(s.get("state") == "COMPLETE" for s in list(seen)):
            time.sleep(0.05)  # polling the reader's list for the condition, with a deadline
        assert any(s["state"] == "COMPLETE" for s in seen) and all(s["strategy_id"] == "watch-tail" for s in seen)
    finally:
        tail.terminate()
        tail.wait(10)


def test_executions_list_filters_and_json(system):
    system.submit([intent(f"list-{i}", strategy_id="lister", symbol=("AAPL", "MSFT")[i % 2]) for i in range(4)])
    rows = [json.loads(line) for line in system.cli("executions", "--strategy", "lister", "--symbol", "MSFT", "--json").stdout.decode().splitlines()]
    assert len(rows) == 2 and all(r["symbol"] == "MSFT" and r["strategy_id"] == "lister" for r in rows)
    assert rows[0]["created_at"] >= rows[1]["created_at"]  # newest first
    failed = [json.loads(line) for line in system.cli("executions", "--state", "FAILED", "--json", "--limit", "0").stdout.decode().splitlines()]
    assert failed and all(r["state"] == "FAILED" for r in failed)
    one_line(system.cli("executions", "--state", "DONE"), 2, "unknown state 'DONE'")


def _on_a_terminal(args: list[str], input: bytes, timeout: float = 60) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal (the progress bar is for people, not pipes)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([PY, "-m", "jetexec.cli", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave, env={**CLEAN_ENV, "COLUMNS": "100"})
    os.close(slave)
    proc.stdin.write(input)
    proc.stdin.close()
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(10)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


def test_submit_wait_shows_progress_on_a_terminal_only(system):
    batch = lines_of(*(intent(f"progress-{i}", qty=10, split="TWAP", horizon_s=2, strategy_id="progress") for i in range(3)))
    rc, screen = _on_a_terminal(["submit", "-", "--wait", "--nats-url", system.url], batch)
    assert rc == 0, screen
    assert "waiting" in screen and "/3" in screen, screen
    piped = system.cli("submit", "-", "--wait", input=batch)
    assert piped.stderr == b""  # nothing on a pipe


def test_no_gateway_is_said_on_a_terminal_and_ends_with_exit_code_7(tmp_path):
    bare = EmbeddedServer(tmp_path / "nogw", port=free_port()).start()
    try:
        assert jetexec("provision", "--nats-url", bare.url).returncode == 0
        rc, screen = _on_a_terminal(["submit", "-", "--wait", "--timeout", "4", "--nats-url", bare.url], lines_of(intent("nogw")))
    finally:
        bare.stop()
    assert rc == 7, screen
    assert "no gateway has answered yet" in screen and "no gateway answered" in screen


# ---- 10. conveniences --------------------------------------------------------------------------


def test_version_completion_and_help():
    from importlib.metadata import version

    res = jetexec("--version")
    assert res.returncode == 0 and res.stdout.decode().strip() == f"jetexec {version('jetexec')}"
    comp = subprocess.run([PY, "-m", "jetexec.cli"], capture_output=True, timeout=30, env={**CLEAN_ENV, "_JETEXEC_COMPLETE": "complete_bash", "COMP_WORDS": "jetexec sub", "COMP_CWORD": "1"})
    assert comp.stdout.decode().split() == ["submit"], comp
    script = jetexec("--show-completion", "bash", env={"SHELL": "/bin/bash"}).stdout.decode()
    assert "_jetexec_completion" in script and "_JETEXEC_COMPLETE" in script
    helped = jetexec("submit", "--help", env={"COLUMNS": "120"}).stdout.decode()
    for field in ("symbol", "side", "qty", "order_type", "price", "strategy_id", "urgency", "split", "horizon_s", "client_key", "exponent"):
        assert field in helped, field
    up_help = jetexec("up", "--help", env={"COLUMNS": "120"}).stdout.decode()
    assert "jetexec.toml" in up_help and "JETEXEC__RISK__DAILY_TRADE_LIMIT" in up_help and "100 trades" in up_help and "JETEXEC_LIVE_ENABLED" in up_help
