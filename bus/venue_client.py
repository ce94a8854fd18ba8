"""The one venue client: every worker, the CLI and the ledger call venues through it.

Each call is one request on ``venue.<id>.api.<op>`` (``core/venue_protocol.py`` names the ops and
their typed replies), one CLIENT span ``venue.<id>.api.<op>`` when tracing is on and the call is part
of a trace — its
``traceparent`` rides in the request headers, so the venue's reports for that order continue the
execution's trace — and one ``jetexec_venue_call_seconds{op, outcome}`` observation (accepted /
rejected / ok / unavailable / error).

No answer (timeout, no responders) raises :class:`VenueUnavailable`: the outcome is unknown. An
optional op the venue does not serve raises :class:`OpUnavailable` (a subclass), and the caller takes
the op's documented fallback. A venue's ``{"error": ...}`` answer raises :class:`VenueOpError`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from bus import metrics, tracing
from bus.runtime import tracing_on
from bus.topology import venue_api
from core.symbols import SymbolSpec
from core.venue_config import VenuesConfig, parse_venues
from core.venue_protocol import PROTOCOL, UNKNOWN_OP
from schemas.codec import decode, encode
from schemas.venue import (
    FillsReply,
    FillsRequest,
    OrderStatus,
    ProfileRequest,
    QueryOrder,
    SymbolInfo,
    SymbolRequest,
    TapeReply,
    TapeRequest,
    VenueError,
)

_EMPTY = b"{}"


def venues_from_env() -> VenuesConfig:
    """The venues configuration: ``JETEXEC_VENUES`` (JSON) or the file ``JETEXEC_VENUES_FILE``;
    neither = one venue, the paper exchange (``core/venue_config.py``)."""
    raw = os.environ.get("JETEXEC_VENUES")
    path = os.environ.get("JETEXEC_VENUES_FILE")
    if not raw and path:
        with open(path) as f:
            raw = f.read()
    return parse_venues(json.loads(raw) if raw else None)


def _default_venue() -> str:
    return _default_for(os.environ.get("JETEXEC_VENUES"), os.environ.get("JETEXEC_VENUES_FILE"))


@functools.lru_cache(maxsize=8)
def _default_for(_raw: str | None, _path: str | None) -> str:
    return venues_from_env().default


class VenueUnavailable(Exception):
    """No answer from the venue: the outcome of the request is unknown."""


class OpUnavailable(VenueUnavailable):
    """The venue does not serve this optional op (or nobody answered it): take the fallback."""


class VenueOpError(Exception):
    def __init__(self, op: str, error: str, detail: str) -> None:
        super().__init__(f"venue {op}: {error} {detail}".strip())
        self.error = error
        self.detail = detail


class VenueClient:
    """``VenueClient(nc)`` talks to the default venue, ``VenueClient(nc, venue="fix")`` or
    ``client.at("fix")`` to venue ``fix``.

    The default venue is addressed through the original subjects (``venue.api.<op>``; it also
    answers ``venue.<id>.api.<op>``), so the wire of a one-venue deployment — and every NATS
    permission written for it — is what it always was. Any other venue: ``venue.<id>.api.<op>``."""

    def __init__(self, nc: Client, timeout: float = 2.0, venue: str | None = None, default_venue: str | None = None) -> None:
        self.nc = nc
        self.timeout = timeout
        self.default_venue = default_venue or _default_venue()
        self.venue = venue or self.default_venue

    def at(self, venue: str | None) -> "VenueClient":
        """The same client, aimed at ``venue`` (None or "": the default venue)."""
        if (venue or self.default_venue) == self.venue:
            return self
        return VenueClient(self.nc, self.timeout, venue, self.default_venue)

    @property
    def subject_venue(self) -> str | None:
        return None if self.venue == self.default_venue else self.venue

    async def call(self, op: str, request: object, reply_type: Any = None, timeout: float | None = None):
        """One typed request; ``reply_type`` defaults to the protocol's reply type for ``op``."""
        if reply_type is None:
            reply_type = PROTOCOL[op].reply
        payload = _EMPTY if request is None else (request if isinstance(request, bytes) else encode(request))
        subject = venue_api(op, self.subject_venue)
        # Traced inside a trace only: a reference-data lookup outside any execution (specs, recon's
        # queries, TCA's tape) would otherwise start a trace of its own.
        if not tracing_on() or not trace.get_current_span().get_span_context().is_valid:
            return await self._call(op, subject, payload, reply_type, timeout, None)
        headers: dict[str, str] = {}
        with tracing.client_span(subject, headers, cid=getattr(request, "cid", None), client_order_id=getattr(request, "client_order_id", None)) as span:
            try:
                reply = await self._call(op, subject, payload, reply_type, timeout, headers)
            except (VenueUnavailable, VenueOpError) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            accepted = getattr(reply, "accepted", None)
            tracing.annotate(span, outcome=None if accepted is None else ("accepted" if accepted else "rejected"), reason_code=getattr(reply, "reason_code", None))
            return reply

    async def _call(self, op: str, subject: str, payload: bytes, reply_type: Any, timeout: float | None, headers: dict[str, str] | None):
        started = time.perf_counter()
        optional = op in PROTOCOL and not PROTOCOL[op].required
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout or self.timeout, headers=headers)
        except (NatsTimeout, asyncio.TimeoutError, NoRespondersError) as exc:
            metrics.VENUE_CALLS.labels(op, "unavailable").observe(time.perf_counter() - started)
            raise (OpUnavailable if optional else VenueUnavailable)(f"venue {subject}: {type(exc).__name__}") from None
        if msg.headers and msg.headers.get("Status") == "503":
            metrics.VENUE_CALLS.labels(op, "unavailable").observe(time.perf_counter() - started)
            raise (OpUnavailable if optional else VenueUnavailable)(f"venue {subject}: no responders")
        if msg.data[:10].lstrip().startswith(b'{"error"'):
            err = decode(msg.data, VenueError)
            metrics.VENUE_CALLS.labels(op, "error").observe(time.perf_counter() - started)
            if err.error == UNKNOWN_OP:
                raise OpUnavailable(f"venue {subject}: not served")
            raise VenueOpError(op, err.error, err.detail)
        reply = decode(msg.data, reply_type)
        accepted = getattr(reply, "accepted", None)
        metrics.VENUE_CALLS.labels(op, "ok" if accepted is None else ("accepted" if accepted else "rejected")).observe(time.perf_counter() - started)
        return reply

    # ---- typed helpers ---------------------------------------------------------------------------
    async def query(self, client_order_id: str, timeout: float | None = None) -> OrderStatus:
        return await self.call("query", QueryOrder(client_order_id=client_order_id), OrderStatus, timeout)

    async def symbols(self) -> list[SymbolInfo]:
        return await self.call("symbols", None, list[SymbolInfo])

    async def specs(self) -> dict[str, SymbolSpec]:
        return {s.symbol: s for s in await self.call("specs", None, list[SymbolSpec])}

    async def quote(self, symbol: str) -> SymbolInfo:
        return await self.call("quote", SymbolRequest(symbol=symbol), SymbolInfo)

    async def profile(self, symbol: str, buckets: int) -> list:
        return await self.call("profile", ProfileRequest(symbol=symbol, buckets=buckets))

    async def fills(self, client_order_id: str, timeout: float | None = None) -> FillsReply:
        return await self.call("fills", FillsRequest(client_order_id=client_order_id), FillsReply, timeout)

    async def tape(self, symbol: str, t0: float, t1: float, timeout: float | None = None) -> TapeReply:
        return await self.call("tape", TapeRequest(symbol=symbol, t0=t0, t1=t1), TapeReply, timeout)

    async def raw(self, op: str, body: dict | None = None, timeout: float | None = None) -> Any:
        """A venue's own op outside the protocol (the paper exchange's ``stats``, ``orders``)."""
        return await self.call(op, msgspec.json.encode(body or {}), Any, timeout)
