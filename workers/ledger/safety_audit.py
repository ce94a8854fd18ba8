"""Operator actions, audited: every change of KV ``SAFETY`` (halt, resume, mode, fences, risk hook)
becomes ``OPERATOR_ACTION`` entries, exactly once — the entry ids name the KV revision, and the
last revision audited is kept in KV ``LEDGER`` (``hwm.safety``) across restarts."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from nats.js.errors import KeyNotFoundError

from bus.runtime import Out, Publisher
from bus.topology import KV_SAFETY, audit_subject
from core import audit

log = logging.getLogger("jetexec.ledger")


def audit_out(e: audit.AuditEntry) -> Out:
    return Out(audit_subject(e.correlation_id), audit.encode_entry(e), audit.msg_id(e.source, e.n))


class SafetyAuditor:
    def __init__(self, js, ledger_kv, publisher: Publisher) -> None:
        self.js = js
        self.kv = ledger_kv
        self.publisher = publisher

    async def run(self) -> None:
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SAFETY watch failed; restarting it")
            await asyncio.sleep(1.0)  # then watch again (the server may be restarting)

    async def _watch(self) -> None:
        safety = await self.js.key_value(KV_SAFETY)
        try:
            hwm = json.loads((await self.kv.get("hwm.safety")).value)
        except (KeyNotFoundError, Exception):
            hwm = {"revision": 0, "values": {}}
        values: dict[str, str | None] = dict(hwm.get("values", {}))
        watcher = await safety.watchall(include_history=True)
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=5.0)
                except Exception:
                    continue
                if entry is None:
                    continue
                op = str(entry.operation or "").upper()
                deleted = op.endswith(("DEL", "PURGE"))
                value = None if deleted or entry.value is None else entry.value.decode(errors="replace")
                if entry.revision is None or entry.revision <= hwm["revision"]:
                    continue
                created = entry.created.timestamp() if hasattr(entry.created, "timestamp") else time.time()
                entries = audit.numbered(audit.safety_entries(entry.key, value, values.get(entry.key), deleted, created), f"safety:{entry.revision}")
                if entries:
                    await self.publisher.publish([audit_out(e) for e in entries])
                values[entry.key] = value
                hwm = {"revision": entry.revision, "values": values}
                await self.kv.put("hwm.safety", json.dumps(hwm).encode())
        finally:
            try:
                await watcher.stop()
            except Exception:
                pass
