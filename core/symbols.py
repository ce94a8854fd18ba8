"""Instrument reference data: lot and tick sizes, reference prices, trading sessions.

The paper venue trades :data:`DEFAULT_SYMBOLS` around the clock (so the demo works at any hour);
sessions are configurable per symbol.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import msgspec


class Session(msgspec.Struct, frozen=True):
    """A daily UTC trading window, [open, close) in minutes after midnight. 0..1440 = 24h."""

    open_minute: int = 0
    close_minute: int = 1440

    def is_open(self, minute_of_day: int) -> bool:
        if self.open_minute <= self.close_minute:
            return self.open_minute <= minute_of_day < self.close_minute
        return minute_of_day >= self.open_minute or minute_of_day < self.close_minute  # overnight


class SymbolSpec(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    reference_price: Decimal
    lot_size: Decimal = Decimal(1)
    tick_size: Decimal = Decimal("0.01")
    volatility_bps: Decimal = Decimal(2)  # per-tick standard deviation of the simulated mid, in bps
    spread_ticks: int = 2
    depth_lots: Decimal = Decimal(500)  # displayed size per level, in lots
    levels: int = 10
    session: Session = Session()
    halted: bool = False


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec(symbol="AAPL", reference_price=Decimal("190.00")),
    SymbolSpec(symbol="MSFT", reference_price=Decimal("410.00")),
    SymbolSpec(symbol="TSLA", reference_price=Decimal("250.00"), volatility_bps=Decimal(4)),
    SymbolSpec(symbol="005930", reference_price=Decimal("75000"), tick_size=Decimal("100"), depth_lots=Decimal(2000)),
    SymbolSpec(
        symbol="BTC-USD",
        reference_price=Decimal("65000.00"),
        lot_size=Decimal("0.001"),
        tick_size=Decimal("0.5"),
        depth_lots=Decimal(2000),
        volatility_bps=Decimal(3),
    ),
)


def round_to_lot(qty: Decimal, lot: Decimal) -> Decimal:
    """Largest multiple of ``lot`` not above ``qty``."""
    return (qty / lot).to_integral_value(rounding=ROUND_DOWN) * lot


def round_to_tick(price: Decimal, tick: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    return ((price / tick).to_integral_value(rounding=rounding) * tick).quantize(tick)


def lots(qty: Decimal, lot: Decimal) -> int:
    return int((qty / lot).to_integral_value(rounding=ROUND_DOWN))
