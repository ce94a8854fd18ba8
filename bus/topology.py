"""The whole topology — streams, consumers, KV buckets, subjects — declared in one place.

``ensure_topology`` creates or updates everything idempotently; ``jetexec provision`` and every
worker's start-up call it (on Kubernetes the provisioning Job runs it first, workers then only verify).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

DUPLICATE_WINDOW_S = 600.0

# ---- subjects --------------------------------------------------------------------------------
STAGES = ("precheck", "split", "send", "adjust")


def cmd_subject(stage: str, cid: str) -> str:
    return f"exec.cmd.{stage}.{cid}"


def evt_subject(cid: str) -> str:
    """Where a fact about ``cid`` is published (the public subject)."""
    return f"exec.evt.{cid}"


# The fact log is partitioned by correlation id: the stream stores ``exec.evt.<cid>`` as
# ``exec.evt.<p>.<cid>`` with ``p = partition(PARTITIONS, cid)`` (FNV-1a of the cid, computed by the
# server), and each partition has its own coordinator consumer, owned by one coordinator at a time.
# Changing the count re-maps ids to partitions: drain the system first (docs/deploy.md).
PARTITIONS = int(os.environ.get("JETEXEC_PARTITIONS", "8"))
EVT_ALL = "exec.evt.>"  # every stored fact, for readers of the whole log


def evt_stored(cid: str) -> str:
    """The stored subject filter of one execution's facts (any partition token)."""
    return f"exec.evt.*.{cid}"


def published_subject(subject: str) -> str:
    """The subject a stored fact was published on (``exec.evt.<p>.<cid>`` → ``exec.evt.<cid>``):
    what spans and metrics name, whatever partition stored it."""
    if subject.startswith("exec.evt.") and subject.count(".") == 3:
        head, _, cid = subject.rpartition(".")
        return f"exec.evt.{cid}"
    return subject


def partition_of(cid: str, partitions: int = PARTITIONS) -> int:
    """The partition the server's ``partition(n, 1)`` transform gives ``cid`` (FNV-1a, 32 bit)."""
    h = 0x811C9DC5
    for b in cid.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h % partitions


def probe_token(p: int, partitions: int = PARTITIONS) -> str:
    """A subject token that lands on partition ``p`` (for :class:`schemas.messages.PartitionProbe`)."""
    k = 0
    while partition_of(f"probe-{p}-{k}", partitions) != p:
        k += 1
    return f"probe-{p}-{k}"


def coordinator_consumer(p: int) -> str:
    return f"coordinator-p{p}"


COORDINATOR_GROUP = "coordinator"
CTL_RECORD = "exec.ctl.record"  # core request/reply: exec.ctl.record.<cid> -> the owner's ExecutionRecord
CTL_LIVE = "exec.ctl.live"  # core scatter/gather: every coordinator answers {partitions, live cids}


def result_subject(cid: str) -> str:
    """Core NATS: the terminal result of ``cid`` (an ExecutionResult), for whoever waits for it."""
    return f"exec.result.{cid}"


def escape_subject(cid: str | None) -> str:
    return f"exec.escape.{cid or 'all'}"


def report_subject(cid: str) -> str:
    return f"venue.report.{cid}"


def audit_subject(cid: str) -> str:
    return f"exec.audit.{cid}"


def dlq_subject(stage: str) -> str:
    return f"exec.dlq.{stage}"


INTAKE_SUBJECT = "exec.intake"  # request/reply, queue group "gateway"
VENUE_API = "venue.api"  # venue.api.{new,modify,cancel,query,symbols,quote,stats}: request/reply


def venue_api(op: str) -> str:
    return f"{VENUE_API}.{op}"


def subject_template(subject: str) -> str:
    """Low-cardinality form for span names and metric labels: the id token becomes ``{cid}``.

    Every consumed subject ends in the correlation id (or ``all`` on the escape lane), so the last
    token is replaced; core-NATS request subjects (``exec.intake``, ``venue.api.<op>``) stay as they are.
    """
    parts = subject.split(".")
    if subject == INTAKE_SUBJECT or parts[:2] in (["venue", "api"], ["venue", "md"]) or len(parts) < 2:
        return subject
    if parts[:2] == ["exec", "escape"] and parts[-1] == "all":
        return subject
    return ".".join(parts[:-1]) + ".{cid}"


# ---- streams ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy
    deny_delete: bool = False
    deny_purge: bool = False
    max_age_s: float = 0.0
    max_bytes: int = -1
    transform: tuple[str, str] | None = None  # stored-subject transform (source, destination)


STREAMS: tuple[StreamSpec, ...] = (
    # The fact log: every stage result and venue event, per execution. Coordinator + ledger read it.
    StreamSpec("EXEC_EVT", ("exec.evt.*",), RetentionPolicy.LIMITS, deny_delete=True, max_age_s=30 * 86400, transform=("exec.evt.*", f"exec.evt.{{{{partition({PARTITIONS},1)}}}}.{{{{wildcard(1)}}}}")),
    # Work for stateless stage workers; one filtered consumer per stage.
    StreamSpec("EXEC_CMD", ("exec.cmd.*.*",), RetentionPolicy.WORK_QUEUE),
    # The escape lane: own stream, own consumer, own worker — never behind EXEC_CMD's backlog.
    StreamSpec("EXEC_ESCAPE", ("exec.escape.*",), RetentionPolicy.WORK_QUEUE, max_bytes=64 * 1024 * 1024),
    # Venue execution reports (fills, cancels) for the monitor.
    StreamSpec("VENUE_RPT", ("venue.report.*",), RetentionPolicy.WORK_QUEUE),
    # The audit log: append-only. Stream deletion itself must be withheld by account permissions.
    StreamSpec("AUDIT", ("exec.audit.*",), RetentionPolicy.LIMITS, deny_delete=True, deny_purge=True),
    # Dead letters with the reason in headers.
    StreamSpec("EXEC_DLQ", ("exec.dlq.*",), RetentionPolicy.LIMITS, max_age_s=30 * 86400),
)


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 2000
    # A priority group with the pinned-client policy: every replica pulls, the server delivers to
    # one of them (the owner) and switches to another when the owner stops pulling for
    # ``priority_timeout_s``.
    priority_group: str | None = None
    priority_timeout_s: float = 0.0


# The coordinator's partitions. A short ack wait: after a crash the dead owner's in-flight facts
# come back within seconds (the pin only moves once they have). The owner pulls every second, so
# 4 s without a pull means it is gone.
COORDINATOR_CONSUMERS: dict[str, ConsumerSpec] = {
    coordinator_consumer(p): ConsumerSpec("EXEC_EVT", coordinator_consumer(p), f"exec.evt.{p}.*", ack_wait_s=3.0, max_deliver=50, max_ack_pending=4000, priority_group=COORDINATOR_GROUP, priority_timeout_s=4.0)
    for p in range(PARTITIONS)
}

CONSUMERS: dict[str, ConsumerSpec] = {
    **COORDINATOR_CONSUMERS,
    "ledger": ConsumerSpec("EXEC_EVT", "ledger", EVT_ALL, ack_wait_s=30.0, max_deliver=20, max_ack_pending=4000),
    # PAUSE from a risk hook is retried every 0.25 s until the 5 s PRECHECK deadline: room for it.
    # ack_wait is the "worker died" detector: shorter than the stage deadlines (PRECHECK 5 s,
    # SPLITTING 1 s, SENDING 10 s), so a killed worker's in-flight commands are redelivered to a
    # live replica in time. Slow handlers (send, adjust) signal progress with in_progress().
    "precheck": ConsumerSpec("EXEC_CMD", "precheck", "exec.cmd.precheck.*", ack_wait_s=3.0, max_deliver=40),
    "split": ConsumerSpec("EXEC_CMD", "split", "exec.cmd.split.*", ack_wait_s=3.0),
    "send": ConsumerSpec("EXEC_CMD", "send", "exec.cmd.send.*", ack_wait_s=4.0, max_deliver=5),
    "adjust": ConsumerSpec("EXEC_CMD", "adjust", "exec.cmd.adjust.*", ack_wait_s=6.0),
    "monitor": ConsumerSpec("VENUE_RPT", "monitor", "venue.report.*", ack_wait_s=4.0),
    "escape": ConsumerSpec("EXEC_ESCAPE", "escape", "exec.escape.*", ack_wait_s=5.0, max_deliver=50, max_ack_pending=256),
}


# ---- KV buckets ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BucketSpec:
    name: str
    history: int = 1
    ttl_s: float | None = None


KV_EXECUTIONS = "EXECUTIONS"  # cid -> ExecutionRecord (coordinator state, CAS-written)
KV_SAFETY = "SAFETY"  # "state" -> SafetyState; "mode" -> ExecutionMode; "halt.<cid>" / "halt.ALL" -> fence
KV_VENUE = "PAPER_VENUE"  # the paper exchange's own persisted state
KV_COUNTERS = "COUNTERS"  # daily trade counters per strategy (CAS-incremented by precheck)
KV_LEDGER = "LEDGER"  # ledger worker snapshots
KV_COORD = "COORD"  # coordinator partition checkpoints: "cp.<p>" -> {watermark, live cids, owner}

BUCKETS: tuple[BucketSpec, ...] = (
    BucketSpec(KV_EXECUTIONS, history=2),
    BucketSpec(KV_SAFETY, history=5),
    BucketSpec(KV_VENUE, history=1),
    BucketSpec(KV_COUNTERS, history=1),
    BucketSpec(KV_LEDGER, history=1),
    BucketSpec(KV_COORD, history=1),
)

RETIRED_CONSUMERS = (("EXEC_EVT", "coordinator"),)  # replaced by the partition consumers


def _stream_config(s: StreamSpec) -> StreamConfig:
    from nats.js.api import SubjectTransform

    return StreamConfig(
        name=s.name,
        subjects=list(s.subjects),
        retention=s.retention,
        discard=DiscardPolicy.NEW,  # never drop accepted work: refuse new publishes instead
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        deny_delete=s.deny_delete,
        deny_purge=s.deny_purge,
        max_age=s.max_age_s,
        max_bytes=s.max_bytes,
        num_replicas=1,
        subject_transform=SubjectTransform(src=s.transform[0], dest=s.transform[1]) if s.transform else None,
    )


def _consumer_config(c: ConsumerSpec) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=c.durable,
        filter_subject=c.filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=c.ack_wait_s,
        max_deliver=c.max_deliver,
        max_ack_pending=c.max_ack_pending,
        max_waiting=512,
    )


async def ensure_topology(js: JetStreamContext, replicas: int = 1) -> None:
    """Create or update every stream, consumer and bucket. Safe to run concurrently and repeatedly."""
    for s in STREAMS:
        cfg = _stream_config(s)
        cfg.num_replicas = replicas
        try:
            await js.stream_info(s.name)
            try:
                await js.update_stream(cfg)
            except BadRequestError:
                pass  # an immutable setting differs (e.g. deny_delete); keep the existing stream
        except NotFoundError:
            try:
                await js.add_stream(cfg)
            except BadRequestError:
                await js.stream_info(s.name)  # created concurrently by another process
    for c in CONSUMERS.values():
        if c.priority_group:
            await _add_grouped_consumer(js, c)
        else:
            await js.add_consumer(c.stream, _consumer_config(c))
    for stream, durable in RETIRED_CONSUMERS:
        try:
            await js.delete_consumer(stream, durable)
        except NotFoundError:
            pass
    for b in BUCKETS:
        try:
            await js.key_value(b.name)
        except (NotFoundError, Exception):
            await js.create_key_value(KeyValueConfig(bucket=b.name, history=b.history, ttl=b.ttl_s, storage=StorageType.FILE, replicas=replicas))


async def _add_grouped_consumer(js: JetStreamContext, c: ConsumerSpec) -> None:
    """Create or update a consumer with a priority group (nats-py 2.16 has no fields for them, so
    the request is the JetStream API's own JSON)."""
    config = _consumer_config(c).as_dict()
    config |= {"priority_groups": [c.priority_group], "priority_policy": "pinned_client", "priority_timeout": int(c.priority_timeout_s * 1e9)}
    req = json.dumps({"stream_name": c.stream, "config": config, "action": ""}).encode()
    resp = await js._nc.request(f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}", req, timeout=10)  # noqa: SLF001
    body = json.loads(resp.data)
    if "error" in body:
        raise BadRequestError(code=body["error"].get("code"), err_code=body["error"].get("err_code"), description=body["error"].get("description"))


async def verify_topology(js: JetStreamContext) -> list[str]:
    """Names of missing streams/consumers/buckets (empty when ready)."""
    missing = []
    for s in STREAMS:
        try:
            await js.stream_info(s.name)
        except NotFoundError:
            missing.append(f"stream {s.name}")
    for c in CONSUMERS.values():
        try:
            await js.consumer_info(c.stream, c.durable)
        except NotFoundError:
            missing.append(f"consumer {c.stream}/{c.durable}")
    for b in BUCKETS:
        try:
            await js.key_value(b.name)
        except Exception:
            missing.append(f"bucket {b.name}")
    return missing
