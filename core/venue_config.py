"""Which venues exist, which is the default, and each venue's own symbols and limits. Pure: parsed from
plain data (``JETEXEC_VENUES`` JSON or the file named by ``JETEXEC_VENUES_FILE``, read by
``workers/common.py:venues_from_env``).

```json
{"default": "paper",
 "venues": {
   "paper": {"kind": "paper"},
   "fix":   {"kind": "fix",
             "symbols": [{"symbol": "AAPL", "venue_symbol": "AAPL.OQ", "reference_price": "190",
                          "lot_size": "1", "tick_size": "0.01", "min_price": "1", "max_price": "1000",
                          "max_qty": "100000"}],
             "fix": {"host": "127.0.0.1", "port": 9878, "sender_comp_id": "JETEXEC",
                     "target_comp_id": "VENUE", "heartbeat_s": 30, "reset_on_logon": false,
                     "store_dir": ".jetexec/fix"}}}}
```

Without any configuration there is one venue, ``paper`` (the paper exchange), and it is the default.
A ``fix`` venue is **live**: it routes to a real counterparty, so only a LIVE execution with both live
switches may use it (:func:`core.venue_protocol.route_refusal`), and its worker never opens a socket
without them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from core.symbols import SymbolSpec
from core.venue_protocol import DEFAULT_VENUE, SymbolLimits, is_venue_id

VenueKind = Literal["paper", "fix"]
LIVE_KINDS = frozenset({"fix"})


class VenueSymbol(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One instrument at one venue: jetexec's symbol, the venue's own, and the venue's limits."""

    symbol: str
    venue_symbol: str = ""  # "" = the same as ``symbol``
    reference_price: Decimal
    lot_size: Decimal = Decimal(1)
    tick_size: Decimal = Decimal("0.01")
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    max_qty: Decimal | None = None

    @property
    def wire_symbol(self) -> str:
        return self.venue_symbol or self.symbol

    def spec(self) -> SymbolSpec:
        return SymbolSpec(symbol=self.symbol, reference_price=self.reference_price, lot_size=self.lot_size, tick_size=self.tick_size)

    def limits(self) -> SymbolLimits:
        return SymbolLimits(min_price=self.min_price, max_price=self.max_price, max_qty=self.max_qty)


class FixSession(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A FIX 4.4 initiator session (QuickFIX settings are derived from it: ``core/fix_mapping.py``)."""

    host: str = "127.0.0.1"
    port: int
    sender_comp_id: str
    target_comp_id: str
    heartbeat_s: int = 30
    reset_on_logon: bool = False  # False: sequence numbers persist across restarts (the store)
    store_dir: str = ".jetexec/fix"  # QuickFIX FileStore + FileLog, per session
    reconnect_s: int = 5  # QuickFIX ReconnectInterval: the wait between connection attempts
    tls: bool = False
    tls_ca: str = ""  # CA file that signs the venue's certificate
    tls_cert: str = ""  # our client certificate (mutual TLS), optional
    tls_key: str = ""
    reply_timeout_s: float = 1.5  # how long a venue op waits for the venue's answer (under the callers' 2 s)


class VenueDef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: VenueKind
    symbols: tuple[VenueSymbol, ...] = ()
    fix: FixSession | None = None

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS

    def symbol(self, symbol: str) -> VenueSymbol | None:
        return next((s for s in self.symbols if s.symbol == symbol), None)

    def by_wire_symbol(self, wire: str) -> VenueSymbol | None:
        return next((s for s in self.symbols if s.wire_symbol == wire), None)


class VenuesConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    default: str = DEFAULT_VENUE
    venues: dict[str, VenueDef] = {}

    def get(self, venue: str | None) -> VenueDef | None:
        return self.venues.get(venue or self.default)

    def resolve(self, venue: str | None) -> str:
        """The venue id an execution routes to: the intent's, else the default."""
        return venue or self.default

    def is_live(self, venue: str | None) -> bool:
        v = self.get(venue)
        return v is not None and v.live

    def has_live(self) -> bool:
        """Is any configured venue live (a real counterparty)?"""
        return any(v.live for v in self.venues.values())

    @property
    def paper_id(self) -> str | None:
        return next((vid for vid, v in self.venues.items() if v.kind == "paper"), None)

    def of_kind(self, kind: str) -> list[str]:
        return [vid for vid, v in self.venues.items() if v.kind == kind]


DEFAULT_CONFIG = VenuesConfig(default=DEFAULT_VENUE, venues={DEFAULT_VENUE: VenueDef(kind="paper")})


class VenueConfigError(ValueError):
    pass


def parse_venues(raw: dict | None) -> VenuesConfig:
    """Validate a venues configuration; every mistake is a :class:`VenueConfigError` naming it."""
    if not raw:
        return DEFAULT_CONFIG
    try:
        cfg = msgspec.convert(raw, VenuesConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise VenueConfigError(f"venues config: {exc}") from None
    if not cfg.venues:
        cfg = msgspec.structs.replace(cfg, venues=dict(DEFAULT_CONFIG.venues))
    for vid, v in cfg.venues.items():
        if not is_venue_id(vid):
            raise VenueConfigError(f"venue id {vid!r}: 1..32 of a-z 0-9 - starting with a letter")
        if v.kind == "fix":
            if v.fix is None:
                raise VenueConfigError(f"venue {vid}: a fix venue needs its 'fix' session settings")
            if not v.symbols:
                raise VenueConfigError(f"venue {vid}: a fix venue needs its symbols (jetexec symbol, venue symbol, lot, tick)")
        seen: set[str] = set()
        wires: set[str] = set()
        for s in v.symbols:
            if s.symbol in seen or s.wire_symbol in wires:
                raise VenueConfigError(f"venue {vid}: symbol {s.symbol} mapped twice")
            seen.add(s.symbol)
            wires.add(s.wire_symbol)
            if s.lot_size <= 0 or s.tick_size <= 0 or s.reference_price <= 0:
                raise VenueConfigError(f"venue {vid}: {s.symbol} lot, tick and reference price must be > 0")
    if len(cfg.of_kind("paper")) > 1:
        raise VenueConfigError("one paper exchange at most")
    if cfg.default not in cfg.venues:
        raise VenueConfigError(f"default venue {cfg.default!r} is not configured")
    return cfg
