"""Seed 002's pluggable risk hooks (A7), as plain data plus one pure evaluator.

A hook is a :class:`RiskHookConfig` (loadable from JSON / env config with :func:`load_risk_hook`)
and :func:`evaluate_risk` turns (config, intent, qty) into a :class:`RiskResult`:

* ``null``        -> ALLOW.
* ``blocking``    -> BLOCK with ``reason`` (default "Blocked by policy", as the seed's factory).
* ``conditional`` -> checks in this order, first hit wins:

  1. symbol not in ``symbol_allowlist`` (when one is set)   -> BLOCK
  2. ``qty > max_qty`` (strict; equal is allowed, as the seed) -> BLOCK
  3. symbol in ``pause_symbols``                             -> PAUSE
  4. otherwise                                               -> ALLOW

  BLOCK conditions come before PAUSE: a definitive "no" must not make the worker wait out the
  PRECHECK deadline first. PAUSE is the config way to get the seed's kill-switch PAUSE: precheck
  retries until its deadline and then fails with RISK_PAUSE_TIMEOUT.

Differences from the seed, on purpose:

* ``symbol_allowlist=None`` means "no restriction"; an *empty* allow-list allows nothing (fail
  closed). The seed treated an empty whitelist as "no check". :func:`load_risk_hook` refuses an
  empty list outright, since it is almost always a mistake (use ``kind: blocking`` to block all).
* The hook is evaluated once per intent (seed 002 evaluated it twice per order, A11).
* Symbols compare exactly (case-sensitive): "005930" and "BTC-USD" are reference-data spellings.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec

from schemas.enums import RiskDecision
from schemas.messages import Intent

RiskHookKind = Literal["null", "blocking", "conditional"]
RISK_HOOK_KINDS: tuple[str, ...] = ("null", "blocking", "conditional")
DEFAULT_BLOCK_REASON = "Blocked by policy"


class RiskResult(msgspec.Struct, frozen=True, kw_only=True):
    decision: RiskDecision
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.decision is RiskDecision.ALLOW


ALLOW = RiskResult(decision=RiskDecision.ALLOW, reason="allowed")


class RiskHookConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One risk hook, as data. Invariants are checked at construction (ValueError)."""

    kind: RiskHookKind = "null"
    reason: str = ""
    symbol_allowlist: tuple[str, ...] | None = None
    max_qty: Decimal | None = None
    pause_symbols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in RISK_HOOK_KINDS:
            raise ValueError(f"risk hook kind must be one of {RISK_HOOK_KINDS}, got {self.kind!r}")
        if self.max_qty is not None:
            if not isinstance(self.max_qty, Decimal) or not self.max_qty.is_finite() or self.max_qty < 0:
                raise ValueError(f"risk hook max_qty must be a finite Decimal >= 0, got {self.max_qty!r}")
        for name in ("symbol_allowlist", "pause_symbols"):
            val = getattr(self, name)
            if val is None:
                continue
            if not isinstance(val, tuple) or not all(isinstance(s, str) and s for s in val):
                raise ValueError(f"risk hook {name} must be a tuple of non-empty strings, got {val!r}")
        if self.kind != "conditional":
            extra = [
                n
                for n, v in (
                    ("symbol_allowlist", self.symbol_allowlist),
                    ("max_qty", self.max_qty),
                    ("pause_symbols", self.pause_symbols or None),
                )
                if v is not None
            ]
            if extra:
                raise ValueError(
                    f"risk hook kind {self.kind!r} takes no {', '.join(extra)} (only 'conditional' does)"
                )


def evaluate_risk(config: RiskHookConfig, intent: Intent, qty: Decimal | None = None) -> RiskResult:
    """Decide ALLOW / BLOCK / PAUSE for ``intent`` at quantity ``qty`` (default: the intent's qty)."""
    q = intent.qty if qty is None else qty
    if config.kind == "null":
        return RiskResult(decision=RiskDecision.ALLOW, reason="null risk hook: allow")
    if config.kind == "blocking":
        return RiskResult(decision=RiskDecision.BLOCK, reason=config.reason or DEFAULT_BLOCK_REASON)
    if config.kind != "conditional":  # unreachable for validated configs; fail closed anyway
        return RiskResult(decision=RiskDecision.BLOCK, reason=f"unknown risk hook kind {config.kind!r}")

    def label(msg: str) -> str:
        return f"{config.reason}: {msg}" if config.reason else msg

    sym = intent.symbol
    if config.symbol_allowlist is not None and sym not in config.symbol_allowlist:
        return RiskResult(decision=RiskDecision.BLOCK, reason=label(f"Symbol {sym} not in allowlist"))
    if config.max_qty is not None and q > config.max_qty:
        return RiskResult(decision=RiskDecision.BLOCK, reason=label(f"Quantity {q} exceeds max {config.max_qty}"))
    if sym in config.pause_symbols:
        return RiskResult(decision=RiskDecision.PAUSE, reason=label(f"Symbol {sym} paused by risk hook"))
    return RiskResult(decision=RiskDecision.ALLOW, reason=label("conditional risk hook: allow"))


# --------------------------------------------------------------------------------------------
# Loading from config
# --------------------------------------------------------------------------------------------

_KEYS = frozenset({"kind", "reason", "symbol_allowlist", "max_qty", "pause_symbols"})


def _symbols(name: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
        raise ValueError(f"risk hook {name} must be a list of symbols, got {raw!r}")
    out: list[str] = []
    for s in raw:
        if not isinstance(s, str) or not s.strip():
            raise ValueError(f"risk hook {name} entries must be non-empty strings, got {s!r}")
        out.append(s.strip())
    return tuple(out)


def _qty(raw: Any) -> Decimal:
    if isinstance(raw, bool):
        raise ValueError(f"risk hook max_qty must be a number, got {raw!r}")
    try:
        if isinstance(raw, Decimal):
            d = raw
        elif isinstance(raw, float):
            d = Decimal(repr(raw))
        elif isinstance(raw, (int, str)):
            d = Decimal(raw.strip() if isinstance(raw, str) else raw)
        else:
            raise ValueError
    except (InvalidOperation, ValueError):
        raise ValueError(f"risk hook max_qty must be a number, got {raw!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"risk hook max_qty must be finite and >= 0, got {raw!r}")
    return d


def load_risk_hook(mapping: Mapping[str, Any] | None) -> RiskHookConfig:
    """Build a :class:`RiskHookConfig` from a plain mapping (decoded JSON or env config).

    ``None`` or ``{}`` gives the null hook. Unknown keys, an unknown ``kind``, a non-list symbol
    list, an empty allow-list, a bad ``max_qty`` or options that the kind ignores raise ValueError
    with a message naming the problem: a typo in risk config must not silently disable a limit.
    """
    if mapping is None:
        return RiskHookConfig()
    if not isinstance(mapping, Mapping):
        raise ValueError(f"risk hook config must be a mapping, got {type(mapping).__name__}")
    unknown = sorted(str(k) for k in mapping if k not in _KEYS)
    if unknown:
        raise ValueError(f"unknown risk hook config key(s) {unknown}; allowed: {sorted(_KEYS)}")
    kind_raw = mapping.get("kind", "null")
    if not isinstance(kind_raw, str):
        raise ValueError(f"risk hook kind must be a string, got {kind_raw!r}")
    kind = kind_raw.strip().lower()
    if kind not in RISK_HOOK_KINDS:
        raise ValueError(f"risk hook kind must be one of {RISK_HOOK_KINDS}, got {kind_raw!r}")
    reason = mapping.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise ValueError(f"risk hook reason must be a string, got {reason!r}")

    allow: tuple[str, ...] | None = None
    if mapping.get("symbol_allowlist") is not None:
        allow = _symbols("symbol_allowlist", mapping["symbol_allowlist"])
        if not allow:
            raise ValueError(
                "risk hook symbol_allowlist is empty: omit it for no restriction, or use kind 'blocking' to block all"
            )
    max_qty = _qty(mapping["max_qty"]) if mapping.get("max_qty") is not None else None
    pause: tuple[str, ...] = ()
    if mapping.get("pause_symbols") is not None:
        pause = _symbols("pause_symbols", mapping["pause_symbols"])
    return RiskHookConfig(
        kind=kind,  # type: ignore[arg-type]  # checked against RISK_HOOK_KINDS above
        reason=reason,
        symbol_allowlist=allow,
        max_qty=max_qty,
        pause_symbols=pause,
    )
