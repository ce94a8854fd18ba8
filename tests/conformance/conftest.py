"""Venues under test for the conformance suite: each fixture starts a real nats-server, the venue's
worker (in this process) and whatever the venue needs behind it, and yields a :class:`VenueUnderTest`.

A new venue adds one fixture here (and to ``VENUES``) and runs the same suite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

import nats
import pytest

from bus.server import EmbeddedServer, free_port
from bus.settings import NatsSettings
from bus.venue_client import VenueClient
from schemas.codec import decode
from schemas.enums import ExecutionMode
from schemas.venue import ExecutionReport
from tests.conftest import wait_for
from tests.venues.counterparty import Counterparty, fix_venue_config, require_fix_stack


@dataclass
class VenueUnderTest:
    """What the suite needs to know about one venue."""

    name: str
    client: VenueClient
    symbol: str
    passive_buy: Decimal  # a BUY LIMIT that rests
    aggressive_buy: Decimal  # a BUY LIMIT price that crosses at once
    mode: ExecutionMode  # the mode its orders are sent in
    reports: dict[str, list[ExecutionReport]] = field(default_factory=dict)  # by client order id

    async def wait_reports(self, coid: str, predicate, what: str, timeout: float = 10.0) -> list[ExecutionReport]:
        await wait_for(lambda: predicate(self.reports.get(coid, [])), timeout=timeout, what=f"{self.name}: {what}")
        return self.reports[coid]


async def _collect(nc, vut: VenueUnderTest) -> None:
    async def on_report(msg) -> None:
        r = decode(msg.data, ExecutionReport)
        vut.reports.setdefault(r.client_order_id, []).append(r)

    await nc.subscribe("venue.report.*", cb=on_report)
    await nc.subscribe("venue.*.report.*", cb=on_report)


@pytest.fixture
async def paper_venue(tmp_path, monkeypatch):
    from workers.paper_exchange.handler import PaperExchangeWorker

    monkeypatch.setenv("JETEXEC_VENUE_CONFIG", json.dumps({"seed": 11, "latency_new_ms": [0, 0], "latency_modify_ms": [0, 0], "latency_cancel_ms": [0, 0]}))
    monkeypatch.delenv("JETEXEC_VENUES", raising=False)
    server = EmbeddedServer(tmp_path / "nats", port=free_port()).start()
    app = PaperExchangeWorker(NatsSettings(url=server.url))
    nc = None
    try:
        await app.start()
        nc = await nats.connect(server.url)
        vut = VenueUnderTest("paper", VenueClient(nc, timeout=3.0), "AAPL", Decimal("150.00"), Decimal("230.00"), ExecutionMode.PAPER)
        await _collect(nc, vut)
        yield vut
    finally:
        if nc is not None:
            await nc.close()
        await app.stop()
        server.stop()


@pytest.fixture
async def fix_venue(tmp_path, monkeypatch):
    require_fix_stack()
    from workers.venue_fix.handler import FixVenueWorker

    cp = Counterparty(tmp_path / "counterparty").start()
    # A named venue next to the (default) paper exchange: its subjects carry its id.
    monkeypatch.setenv("JETEXEC_VENUES", json.dumps({"default": "paper", "venues": {"paper": {"kind": "paper"}, "fix": fix_venue_config(cp.port, tmp_path / "fix-store")}}))
    monkeypatch.setenv("JETEXEC_LIVE_CONFIG_FLAG", "1")
    monkeypatch.setenv("JETEXEC_LIVE_ENABLED", "yes")
    server = EmbeddedServer(tmp_path / "nats", port=free_port()).start()
    app = FixVenueWorker(NatsSettings(url=server.url))
    nc = None
    try:
        await app.start()
        await wait_for(lambda: app.venues[0].logged_on, timeout=20, what="FIX logon")
        nc = await nats.connect(server.url)
        vut = VenueUnderTest("fix", VenueClient(nc, timeout=3.0, venue="fix"), "AAPL", Decimal("150.00"), Decimal("230.00"), ExecutionMode.LIVE)
        vut.counterparty = cp  # type: ignore[attr-defined]
        await _collect(nc, vut)
        yield vut
    finally:
        if nc is not None:
            await nc.close()
        await app.stop()
        server.stop()
        cp.stop()


VENUES = ["paper_venue", "fix_venue"]


@pytest.fixture(params=VENUES)
def venue(request) -> VenueUnderTest:
    return request.getfixturevalue(request.param)
