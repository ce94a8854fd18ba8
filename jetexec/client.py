"""An async Python client, so strategy code does not shell out.

    async with JetexecClient.connect("nats://127.0.0.1:4222") as jx:
        receipt = await jx.submit({"symbol": "AAPL", "side": "BUY", "qty": 10, "strategy_id": "s1"})
        result = await jx.wait(receipt.correlation_id, timeout=30)

``submit`` retries until the gateway confirms (the intent's deterministic id makes retries safe);
``wait`` watches the execution's KV record until it reaches a terminal state.

Tracing: when the application has installed an OpenTelemetry SDK tracer provider (for instance with
``bus.tracing.setup_tracing("my-strategy")`` and the ``OTEL_*`` variables), ``submit`` opens a CLIENT
span ``exec.intake`` and sends its ``traceparent`` with the intent, so the execution's trace starts in
the caller's (the gateway's ``process exec.intake`` span becomes its child); ``escape`` does the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from nats.js.errors import KeyNotFoundError

from bus import tracing
from bus.runtime import tracing_on
from bus.settings import NatsSettings, connect
from bus.topology import INTAKE_SUBJECT, KV_EXECUTIONS, KV_SAFETY, escape_subject
from core.coordinator import to_result
from core.execution_fsm import TERMINAL
from schemas.codec import decode, encode
from schemas.enums import SafetyState
from schemas.messages import EscapeRequest, ExecutionRecord, ExecutionResult
from workers.gateway.handler import IntakeReceipt


class JetexecError(RuntimeError):
    pass


class JetexecClient:
    def __init__(self, nc) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=5)
        self._kv = None

    @classmethod
    async def open(cls, url: str | None = None, settings: NatsSettings | None = None, name: str = "jetexec-client") -> "JetexecClient":
        s = settings or NatsSettings.from_env(url)
        # Fail fast when nothing listens (one clear error, not 15 s of retries); once connected,
        # ride out a server restart like the workers do.
        nc = await connect(s, name, max_reconnect=2)
        nc.options["max_reconnect_attempts"] = 120
        return cls(nc)

    @classmethod
    def connect(cls, url: str | None = None, settings: NatsSettings | None = None) -> "_Ctx":
        return _Ctx(url, settings)

    async def close(self) -> None:
        await self.nc.drain()

    async def kv(self):
        if self._kv is None:
            self._kv = await self.js.key_value(KV_EXECUTIONS)
        return self._kv

    async def submit(self, intent: bytes | str | dict[str, Any], timeout: float = 30.0) -> IntakeReceipt:
        """Send one intent (a dict or raw JSON); returns the gateway's receipt."""
        raw = intent if isinstance(intent, bytes) else (intent.encode() if isinstance(intent, str) else json.dumps(intent).encode())
        if tracing_on():
            headers: dict[str, str] = {}
            with tracing.client_span(INTAKE_SUBJECT, headers) as span:
                receipt = await self._submit(raw, timeout, headers)
                tracing.annotate(span, cid=receipt.correlation_id, state=receipt.state, reason_code=receipt.reason_code, alerts=receipt.alerts)
                return receipt
        return await self._submit(raw, timeout, None)

    async def _submit(self, raw: bytes, timeout: float, headers: dict[str, str] | None) -> IntakeReceipt:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                msg = await self.nc.request(INTAKE_SUBJECT, raw, timeout=min(5.0, max(0.1, deadline - time.monotonic())), headers=headers)
                return decode(msg.data, IntakeReceipt)
            except (NatsTimeout, NoRespondersError, asyncio.TimeoutError):
                if time.monotonic() >= deadline:
                    raise JetexecError("no gateway answered: is `jetexec up` running?") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def record(self, cid: str) -> ExecutionRecord | None:
        try:
            entry = await (await self.kv()).get(cid)
        except KeyNotFoundError:
            return None
        return decode(entry.value, ExecutionRecord) if entry.value else None

    async def status(self, cid: str) -> ExecutionResult | None:
        r = await self.record(cid)
        return to_result(r) if r else None

    async def wait(self, cid: str, timeout: float = 60.0) -> ExecutionResult:
        results = await self.wait_many([cid], timeout)
        return results[cid]

    async def wait_many(self, cids: Iterable[str], timeout: float = 60.0, on_update=None) -> dict[str, ExecutionResult]:
        """Watch KV until every execution is terminal (or the timeout: then their current state)."""
        want = set(cids)
        latest: dict[str, ExecutionRecord] = {}
        kv = await self.kv()
        watcher = await kv.watchall()
        deadline = time.monotonic() + timeout
        try:
            while True:
                done = {c for c, r in latest.items() if r.state in TERMINAL}
                if want <= done:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    entry = await watcher.updates(timeout=min(remaining, 1.0))
                except (NatsTimeout, asyncio.TimeoutError):
                    continue
                if entry is None or entry.value is None or entry.key not in want:
                    continue
                rec = decode(entry.value, ExecutionRecord)
                latest[entry.key] = rec
                if on_update is not None:
                    on_update(rec)
        finally:
            await watcher.stop()
        out = {}
        for c in want:
            rec = latest.get(c) or await self.record(c)
            if rec is not None:
                out[c] = to_result(rec)
        return out

    async def escape(self, cid: str | None, flatten: bool = False, reason: str = "MANUAL", safety_state: SafetyState | None = None) -> None:
        req = EscapeRequest(reason=reason, cid=cid, flatten=flatten, requested_at=time.time(), safety_state=safety_state)
        subject = escape_subject(cid)
        headers = {"Nats-Msg-Id": f"escape.{cid or 'all'}.{time.time_ns()}"}
        if tracing_on():
            with tracing.producer_span(subject, headers, msg_id=headers["Nats-Msg-Id"], cid=cid):
                await self.js.publish(subject, encode(req), headers=headers)
            return
        await self.js.publish(subject, encode(req), headers=headers)

    async def halt(self) -> None:
        """LOCKDOWN: refuse new intents and cancel everything live."""
        kv = await self.js.key_value(KV_SAFETY)
        await kv.put("state", SafetyState.LOCKDOWN.value.encode())
        await self.escape(None, reason="HALT", safety_state=SafetyState.LOCKDOWN)

    async def resume(self) -> None:
        kv = await self.js.key_value(KV_SAFETY)
        await kv.put("state", SafetyState.NORMAL.value.encode())
        try:
            await kv.delete("halt.ALL")
        except Exception:
            pass

    async def positions(self) -> list[dict]:
        from bus.topology import KV_LEDGER

        kv = await self.js.key_value(KV_LEDGER)
        try:
            keys = await kv.keys()
        except Exception:
            return []
        out = []
        for k in sorted(keys):
            if k.startswith("pos."):
                out.append(json.loads((await kv.get(k)).value))
        return out


class _Ctx:
    def __init__(self, url, settings) -> None:
        self.url, self.settings = url, settings

    async def __aenter__(self) -> JetexecClient:
        self.client = await JetexecClient.open(self.url, self.settings)
        return self.client

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
