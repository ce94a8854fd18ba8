"""Deterministic identifiers. Same input, same id, in every process (no ``hash()``, no randomness)."""

from __future__ import annotations

import hashlib

import msgspec


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\x1f")
    return h.hexdigest()


def canonical_json(obj: object) -> bytes:
    """Sorted keys, compact separators: the canonical form ids are hashed over."""
    return msgspec.json.encode(msgspec.to_builtins(obj), order="sorted")


def idempotency_key(canonical_intent: bytes) -> str:
    """Key of an intent, from its canonical content (which includes ``client_key`` when given)."""
    return "ik-" + _digest("intent", canonical_intent.decode())[:32]


def correlation_id(idem_key: str) -> str:
    """One execution per idempotency key: the correlation id is derived from it."""
    return "x" + _digest("cid", idem_key)[:23]


def rejection_id(raw: bytes) -> tuple[str, str]:
    """(idempotency key, correlation id) for input that never became a valid intent."""
    key = "ik-" + hashlib.sha256(b"rejected\x1f" + raw).hexdigest()[:32]
    return key, correlation_id(key)


def client_order_id(idem_key: str, child_index: int, generation: int = 0) -> str:
    """Venue-facing id of a child: idempotency key + child index + amend generation."""
    return f"c{_digest('child', idem_key)[:16]}-{child_index:02d}-{generation}"


def flatten_order_id(idem_key: str) -> str:
    return f"c{_digest('child', idem_key)[:16]}-FL-0"
