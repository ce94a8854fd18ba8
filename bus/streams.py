"""Reading JetStream in bulk: one message by subject, a whole filtered stream, a bucket's keys.

Used by every reader of the fact log that is not its durable consumer: the ledger (gap fill,
replay, verify), the coordinator (replaying a partition it takes over), reports and recon.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bus.stamps import msg_ts, ns_from_rfc3339, ns_to_ts


class IncompleteRead(RuntimeError):
    """A stream read ended before it had every message it was asked for."""


@dataclass(frozen=True)
class RawMsg:
    seq: int
    ts: float
    subject: str
    data: bytes
    headers: dict[str, str] | None = None


async def next_msg(nc: Client, stream: str, subject: str, start_seq: int, timeout: float = 5.0) -> RawMsg | None:
    """The first message on ``subject`` with sequence >= ``start_seq`` (None if there is none)."""
    req = json.dumps({"seq": max(1, start_seq), "next_by_subj": subject}).encode()
    resp = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", req, timeout=timeout)
    body = json.loads(resp.data)
    if "error" in body:
        if body["error"].get("code") == 404:
            return None
        raise RuntimeError(f"stream get {stream}/{subject}@{start_seq}: {body['error']}")
    m = body["message"]
    data = base64.b64decode(m["data"]) if m.get("data") else b""
    return RawMsg(seq=int(m["seq"]), ts=ns_to_ts(ns_from_rfc3339(m["time"])), subject=m["subject"], data=data)


async def read_stream(
    nc: Client,
    stream: str,
    filter_subject: str,
    *,
    start_seq: int | None = None,
    start_time: float | None = None,
    last_per_subject: bool = False,
    batch: int = 512,
    complete: bool = False,
) -> AsyncIterator[RawMsg]:
    """Every message of ``stream`` matching ``filter_subject`` at the time of the call, in order,
    through an ephemeral consumer (no acks, deleted afterwards). With ``complete``, a read that
    stops short (the server went away, a fetch timed out) raises :class:`IncompleteRead` instead of
    ending early: for a caller that rebuilds state from what it read."""
    js = nc.jetstream(timeout=10)
    if last_per_subject:
        policy, extra = DeliverPolicy.LAST_PER_SUBJECT, {}
    elif start_seq:
        policy, extra = DeliverPolicy.BY_START_SEQUENCE, {"opt_start_seq": start_seq}
    elif start_time:
        policy, extra = DeliverPolicy.BY_START_TIME, {"opt_start_time": _dt.datetime.fromtimestamp(start_time, _dt.timezone.utc).isoformat().replace("+00:00", "Z")}
    else:
        policy, extra = DeliverPolicy.ALL, {}
    cfg = ConsumerConfig(deliver_policy=policy, ack_policy=AckPolicy.NONE, filter_subject=filter_subject, inactive_threshold=30.0, mem_storage=True, max_ack_pending=-1, **extra)
    info = await js.add_consumer(stream, cfg)
    try:
        total = info.num_pending
        if not total:
            return
        psub = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
        got = 0
        try:
            while got < total:
                try:
                    msgs = await psub.fetch(batch=min(batch, total - got), timeout=5)
                except TimeoutError:
                    if complete:
                        raise IncompleteRead(f"{stream} {filter_subject}: {got} of {total} read") from None
                    break
                except Exception as exc:  # nats' own TimeoutError subclass
                    if "timeout" in type(exc).__name__.lower():
                        if complete:
                            raise IncompleteRead(f"{stream} {filter_subject}: {got} of {total} read") from None
                        break
                    raise
                for m in msgs:
                    got += 1
                    md = m.metadata
                    yield RawMsg(seq=md.sequence.stream, ts=msg_ts(m), subject=m.subject, data=m.data, headers=dict(m.headers) if m.headers else None)
                    if md.num_pending == 0:
                        got = total
        finally:
            await psub.unsubscribe()
    finally:
        try:
            await js.delete_consumer(stream, info.name)
        except Exception:
            pass


async def kv_scan(nc: Client, bucket: str, prefix: str) -> dict[str, bytes]:
    """Latest value of every key starting with ``prefix`` (deleted keys left out), in one bulk read."""
    out: dict[str, bytes] = {}
    head = f"$KV.{bucket}."
    async for m in read_stream(nc, f"KV_{bucket}", f"{head}{prefix}>", last_per_subject=True):
        op = (m.headers or {}).get("KV-Operation")
        key = m.subject[len(head) :]
        if op in ("DEL", "PURGE"):
            out.pop(key, None)
        else:
            out[key] = m.data
    return out
