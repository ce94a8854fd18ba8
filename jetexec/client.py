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
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nats.errors import MaxPayloadError, NoRespondersError, TimeoutError as NatsTimeout
from nats.js.errors import KeyNotFoundError

from bus import tracing
from bus.runtime import tracing_on
from bus.settings import NatsSettings, connect
from bus.topology import CTL_RECORD, INTAKE_SUBJECT, KV_EXECUTIONS, KV_LEDGER, KV_SAFETY, escape_subject, result_subject
from core.coordinator import to_result
from core.execution_fsm import TERMINAL
from core.ids import rejection_id
from core.intake import IntentError, intent_identity, parse_intent
from core.order_fsm import ORDER_TERMINAL
from schemas.codec import decode, encode
from schemas.enums import ExecutionMode, ExecutionState, OrderState, ReasonCode, SafetyState
from schemas.messages import CancelledChild, EscapeOutcome, EscapeRequest, ExecutionRecord, ExecutionResult, IntakeReceipt
from schemas.venue import SymbolInfo
from workers.common import VenueClient


OWNER_WAIT_S = 0.25  # how long the owning coordinator may take to answer for a record
RECHECK_S = 2.0  # how often an execution still open is re-read from its snapshot (results are core NATS)


class JetexecError(RuntimeError):
    pass


def predicted_cid(raw: bytes) -> str | None:
    """The correlation id the gateway will give this intent (None when it would reject it: the
    receipt says which id it got then)."""
    try:
        return intent_identity(parse_intent(raw, None))[1]
    except IntentError:
        return None


class JetexecClient:
    def __init__(self, nc, hold_when_overloaded: bool = True) -> None:
        self.nc = nc
        # An OVERLOADED refusal is retried after the gateway's retry-after until the submit's
        # timeout (False: the refusal is returned at once, for callers with their own policy).
        self.hold_when_overloaded = hold_when_overloaded
        self.refusals = 0  # refusals seen (and waited out)
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
                receipt = decode(msg.data, IntakeReceipt)
                if receipt.reason_code is ReasonCode.OVERLOADED and self.hold_when_overloaded:
                    # Refused, not accepted: nothing was stored, so trying again is the same intent.
                    self.refusals += 1
                    wait = (receipt.retry_after_ms or 100) / 1000
                    if time.monotonic() + wait < deadline:
                        await asyncio.sleep(wait)  # the gateway's retry-after
                        continue
                return receipt
            except (NatsTimeout, NoRespondersError, asyncio.TimeoutError):
                if time.monotonic() >= deadline:
                    raise JetexecError("no gateway answered: is `jetexec up` running?") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def record(self, cid: str) -> ExecutionRecord | None:
        """The execution as it stands: asked of the coordinator that owns it (exact, from memory),
        else its snapshot in KV ``EXECUTIONS`` (finished executions at once, live ones within a second)."""
        try:
            msg = await self.nc.request(f"{CTL_RECORD}.{cid}", b"", timeout=OWNER_WAIT_S)
            if msg.data:
                return decode(msg.data, ExecutionRecord)
        except Exception:
            pass  # no owner holds it (finished long ago, or no coordinator runs): the snapshot
        return await self.snapshot(cid)

    async def snapshot(self, cid: str) -> ExecutionRecord | None:
        """The execution's snapshot in KV ``EXECUTIONS`` (may trail a live execution by a second)."""
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
        """Wait until every execution is terminal (or the timeout: then their current state).

        The coordinator publishes each terminal result on ``exec.result.<cid>`` after storing the
        execution's final snapshot, so: subscribe to each result first, then read each snapshot once
        (what finished before the subscription is in it), then wait. Results are core NATS (lost if
        the connection drops at that moment), so executions still open are re-read every
        ``RECHECK_S``. ``on_update`` is called with each terminal ExecutionResult as it arrives."""
        want = set(cids)
        results: dict[str, ExecutionResult] = {}
        done = asyncio.Event()

        def found(result: ExecutionResult) -> None:
            if result.correlation_id in results or result.correlation_id not in want:
                return
            results[result.correlation_id] = result
            if on_update is not None:
                on_update(result)
            if len(results) == len(want):
                done.set()

        async def on_result(msg) -> None:
            try:
                found(decode(msg.data, ExecutionResult))
            except Exception:
                return

        subs = [await self.nc.subscribe(result_subject(cid), cb=on_result) for cid in want]
        deadline = time.monotonic() + timeout
        try:
            await self.nc.flush()
            if not want:
                return {}
            pending = list(want)
            while pending:
                for result in await self._terminal_snapshots(pending):
                    found(result)
                remaining = deadline - time.monotonic()
                if done.is_set() or remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(done.wait(), min(remaining, RECHECK_S))
                except asyncio.TimeoutError:
                    pass
                pending = [c for c in want if c not in results]
        finally:
            for sub in subs:
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
        out = dict(results)
        for c in want - set(results):  # timed out: report where it stands
            rec = await self.record(c)
            if rec is not None:
                out[c] = to_result(rec)
        return out

    async def execute(self, intent: bytes | str | dict[str, Any], timeout: float = 60.0) -> ExecutionResult:
        """Submit one intent and wait for its terminal result, with no snapshot read on the way:
        the result subscription is made before the intent leaves (its id is derived from its
        content), so the result cannot go by unseen. A refused or rejected intent returns its
        FAILED receipt as the result."""
        raw = intent if isinstance(intent, bytes) else (intent.encode() if isinstance(intent, str) else json.dumps(intent).encode())
        expected = predicted_cid(raw)
        box: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_result(msg) -> None:
            if not box.done():
                try:
                    box.set_result(decode(msg.data, ExecutionResult))
                except Exception:
                    return

        sub = await self.nc.subscribe(result_subject(expected), cb=on_result) if expected else None
        try:
            receipt = await self.submit(raw, timeout=timeout)
            if receipt.correlation_id != expected or not receipt.accepted:
                if sub is not None:
                    await sub.unsubscribe()
                    sub = None
                return (await self.wait_many([receipt.correlation_id], timeout)).get(receipt.correlation_id) or receipt.to_result()
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                try:
                    return await asyncio.wait_for(asyncio.shield(box), min(max(remaining, 0.01), RECHECK_S))
                except asyncio.TimeoutError:
                    pass
                snap = await self._terminal_snapshots([expected])
                if snap:
                    return snap[0]
                if time.monotonic() >= deadline:
                    rec = await self.record(expected)
                    return to_result(rec) if rec is not None else receipt.to_result()
        finally:
            if sub is not None:
                await sub.unsubscribe()

    async def _terminal_snapshots(self, cids: list[str]) -> list[ExecutionResult]:
        sem = asyncio.Semaphore(64)

        async def one(cid: str) -> ExecutionResult | None:
            async with sem:
                rec = await self.snapshot(cid)  # finished executions are always in their snapshot
            return to_result(rec) if rec is not None and rec.state in TERMINAL else None

        return [r for r in await asyncio.gather(*(one(c) for c in cids)) if r is not None]

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

    # ---- added for the CLI's views and batch submit; the methods above keep their meaning ------

    async def submit_batch(
        self,
        intents: Iterable[bytes | str | dict[str, Any]],
        *,
        wait: bool = False,
        timeout: float = 120.0,
        concurrency: int = 64,
        on_receipt: Callable[[IntakeReceipt], None] | None = None,
        on_update: Callable[[Any], None] | None = None,
    ) -> list[ExecutionResult]:
        """Submit many intents concurrently: one result per intent, in input order.

        Bad input is a FAILED result with a reason code, never an exception (an intent larger than
        the server carries is ``VALIDATION_TOO_LARGE`` and is not sent). Without ``wait`` the results
        are the receipts (state ``INIT`` or ``FAILED``); with ``wait`` each is terminal, or the state
        it had when ``timeout`` (for the whole batch) ran out.
        """
        deadline = time.monotonic() + timeout
        slots = asyncio.Semaphore(concurrency)
        unsent: set[str] = set()

        async def one(raw: bytes) -> IntakeReceipt:
            async with slots:
                try:
                    receipt = await self.submit(raw, timeout=max(0.1, deadline - time.monotonic()))
                except MaxPayloadError:
                    receipt = _too_large(raw, self.nc.max_payload)
                    unsent.add(receipt.correlation_id)
            if on_receipt is not None:
                on_receipt(receipt)
            return receipt

        receipts = await asyncio.gather(*(one(_raw(i)) for i in intents))
        if not wait:
            return [r.to_result() for r in receipts]
        cids = {r.correlation_id for r in receipts} - unsent
        results = await self.wait_many(cids, timeout=max(0.0, deadline - time.monotonic()), on_update=on_update) if cids else {}
        return [results.get(r.correlation_id) or r.to_result() for r in receipts]

    async def watch_records(self) -> AsyncIterator[ExecutionRecord | None]:
        """Every execution's current record, then ``None`` once (caught up), then each update as the
        coordinator writes it (KV ``EXECUTIONS``). Runs until the caller stops iterating; a caller
        that stops early closes it (``contextlib.aclosing``) so the watch ends with the loop."""
        watcher = await (await self.kv()).watchall()
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=1.0)
                except (NatsTimeout, asyncio.TimeoutError):
                    continue
                if entry is None:
                    yield None
                    continue
                if entry.value:
                    try:
                        yield decode(entry.value, ExecutionRecord)
                    except Exception:
                        continue  # a record this client version cannot read: skip, never crash a view
        finally:
            with contextlib.suppress(Exception):  # the connection may already be closing
                await watcher.stop()

    async def executions(
        self,
        *,
        strategy_id: str | None = None,
        symbol: str | None = None,
        states: Iterable[ExecutionState] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[ExecutionRecord]:
        """Executions in KV ``EXECUTIONS`` matching every filter given, newest first."""
        wanted = set(states) if states else None
        found: list[ExecutionRecord] = []
        async with contextlib.aclosing(self.watch_records()) as records:
            async for rec in records:
                if rec is None:
                    break
                if record_matches(rec, strategy_id=strategy_id, symbol=symbol, states=wanted, since=since, until=until):
                    found.append(rec)
        found.sort(key=lambda r: (r.created_at, r.cid), reverse=True)
        return found[:limit] if limit is not None else found

    async def safety(self) -> SafetyStatus:
        """The safety state (NORMAL … LOCKDOWN), the mode and the HALT fences (KV ``SAFETY``)."""
        kv = await self.js.key_value(KV_SAFETY)
        status = SafetyStatus()
        try:
            keys = await kv.keys()
        except Exception:  # an empty bucket has no keys: nothing was ever halted
            return status
        for key in keys:
            try:
                value = (await kv.get(key)).value or b""
            except KeyNotFoundError:
                continue
            if key == "state":
                status.state = SafetyState(value.decode()) if value.decode() in SafetyState.__members__ else status.state
            elif key == "mode" and value.decode() in ExecutionMode.__members__:
                status.mode = ExecutionMode(value.decode())
            elif key.startswith("halt.") and value:
                status.halted.append(key[5:])
            elif key == "risk_hook" and value:
                status.risk_hook_override = True
        status.halted.sort()
        return status

    async def symbols(self) -> list[SymbolInfo]:
        """What the venue trades (symbol, reference price, lot and tick size, bid and ask)."""
        return await VenueClient(self.nc).symbols()

    async def escape_and_report(self, cid: str, *, flatten: bool = False, timeout: float = 30.0) -> EscapeOutcome:
        """Escape one execution and report what the escape cancelled. An unknown id is reported
        (``found=False``) and nothing is sent; a terminal execution has nothing live to cancel."""
        before = await self.record(cid)
        if before is None:
            return EscapeOutcome(correlation_id=cid, found=False)
        if before.state in TERMINAL:
            return EscapeOutcome(correlation_id=cid, found=True, state_before=before.state, state=before.state)
        live = {c.client_order_id: c for c in before.children if c.state not in ORDER_TERMINAL}
        await self.escape(cid, flatten=flatten)
        after = await self.wait(cid, timeout=timeout)
        record = await self.record(cid)
        cancelled, not_cancelled = [], []
        for child in after.children:
            if child.client_order_id not in live:
                continue
            if child.state is OrderState.CANCELLED:
                sent = live[child.client_order_id].dispatched
                cancelled.append(CancelledChild(client_order_id=child.client_order_id, qty=child.qty, filled_qty=child.filled_qty, cancelled_qty=child.qty - child.filled_qty, sent=sent))
            else:
                not_cancelled.append(child.client_order_id)
        return EscapeOutcome(
            correlation_id=cid,
            found=True,
            state_before=before.state,
            state=after.state,
            cancelled=cancelled,
            not_cancelled=not_cancelled,
            flatten_client_order_id=record.flatten_client_order_id if record else None,
            timed_out=after.state not in TERMINAL,
        )


@dataclass
class SafetyStatus:
    state: SafetyState = SafetyState.NORMAL
    mode: ExecutionMode | None = None
    halted: list[str] = field(default_factory=list)  # correlation ids, or "ALL"
    risk_hook_override: bool = False  # an operator's risk_hook is set in KV SAFETY


def record_matches(r: ExecutionRecord, *, strategy_id=None, symbol=None, states=None, since=None, until=None) -> bool:
    intent = r.intent
    if strategy_id is not None and (intent is None or intent.strategy_id != strategy_id):
        return False
    if symbol is not None and (intent is None or intent.symbol != symbol):
        return False
    if states is not None and r.state not in states:
        return False
    if since is not None and r.created_at < since:
        return False
    return until is None or r.created_at <= until


def _raw(intent: bytes | str | dict[str, Any]) -> bytes:
    return intent if isinstance(intent, bytes) else (intent.encode() if isinstance(intent, str) else json.dumps(intent).encode())


def _too_large(raw: bytes, limit: int) -> IntakeReceipt:
    """The receipt of an intent the server cannot even carry (over its max payload): FAILED, as the
    gateway would answer (its own limit is far lower), with the id the gateway would have given it."""
    key, cid = rejection_id(raw)
    detail = f"intent is {len(raw)} bytes, more than the server carries ({limit})"
    return IntakeReceipt(accepted=False, correlation_id=cid, idempotency_key=key, state=ExecutionState.FAILED, reason_code=ReasonCode.VALIDATION_TOO_LARGE, detail=detail, created_at=time.time())


class _Ctx:
    def __init__(self, url, settings) -> None:
        self.url, self.settings = url, settings

    async def __aenter__(self) -> JetexecClient:
        self.client = await JetexecClient.open(self.url, self.settings)
        return self.client

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
