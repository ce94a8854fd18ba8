"""Encoding and edge validation for wire messages (JSON via msgspec).

Decoders raise :class:`DecodeError` carrying a reason code, so a worker can answer or dead-letter a
bad message with the reason instead of crashing.

Beyond the JSON schema, every wire message (commands, facts, escape requests, venue requests and
execution reports — not KV records) is held to the contract its consumers rely on:

* every decimal is finite and within ``[0, MAX_DECIMAL]`` (no NaN/Infinity, no ``1e400`` that turns
  into ``decimal.InvalidOperation`` deep inside a stage), every int but ``v`` within ``[0, 2**53]``,
  every float (timestamps) finite and within ``[0, MAX_TIMESTAMP]``;
* the ids that become subject tokens and KV keys (``cid``, ``client_order_id``,
  ``new_client_order_id``) are 1..128 characters of ``[A-Za-z0-9_-]`` (:func:`is_id`). A longer id
  would make a KV subject exceed the server's 4 KiB control line, and the server closes the
  connection of whoever sends it.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from schemas.enums import ReasonCode
from schemas.messages import SCHEMA_VERSION, Command, EscapeRequest, Fact
from schemas.venue import CancelOrder, ExecutionReport, ModifyOrder, NewOrder, QueryOrder

T = TypeVar("T")

MAX_MESSAGE_BYTES = 256 * 1024
MAX_DECIMAL = Decimal("1e15")
MAX_INT = 2**53
MAX_TIMESTAMP = 1e12
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ID_FIELDS = frozenset({"cid", "client_order_id", "new_client_order_id"})


def is_id(value: str) -> bool:
    """A correlation or client order id: safe as a subject token and as a KV key."""
    return _ID.fullmatch(value) is not None

_encoder = msgspec.json.Encoder(decimal_format="string")


class DecodeError(ValueError):
    def __init__(self, reason_code: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason_code.value}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


_decoders: dict[Any, msgspec.json.Decoder] = {}


def decode(data: bytes, type_: type[T] | Any) -> T:
    """Decode and validate; refuse oversized payloads and other schema versions with a reason code."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(ReasonCode.VALIDATION_TOO_LARGE, f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        obj = dec.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(ReasonCode.VALIDATION_INVALID_FIELD, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(ReasonCode.VALIDATION_MALFORMED, str(exc)) from None
    version = getattr(obj, "v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DecodeError(ReasonCode.VALIDATION_SCHEMA_VERSION, f"schema version {version} != {SCHEMA_VERSION}")
    if type(obj) in _WIRE:
        _check(obj, "$.")
    return obj


_WIRE: frozenset[type] = frozenset((*Command.__args__, *Fact.__args__, EscapeRequest, NewOrder, ModifyOrder, CancelOrder, QueryOrder, ExecutionReport))


def _decimal_code(name: str) -> ReasonCode:
    if "qty" in name:
        return ReasonCode.VALIDATION_INVALID_QUANTITY
    if "price" in name:
        return ReasonCode.VALIDATION_INVALID_PRICE
    return ReasonCode.VALIDATION_INVALID_FIELD


_DEC, _INT, _FLOAT, _IDSTR, _STRUCT, _STRUCTS = range(6)
_PLANS: dict[type, tuple[tuple[str, int], ...]] = {}


def _kind(name: str, t: msgspec.inspect.Type) -> int | None:
    if isinstance(t, msgspec.inspect.UnionType):  # Optional[X]: None passes, X is checked
        kinds = {_kind(name, m) for m in t.types if not isinstance(m, msgspec.inspect.NoneType)}
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(t, msgspec.inspect.DecimalType):
        return _DEC
    if isinstance(t, msgspec.inspect.IntType):
        return None if name == "v" else _INT
    if isinstance(t, msgspec.inspect.FloatType):
        return _FLOAT
    if isinstance(t, msgspec.inspect.StrType):
        return _IDSTR if name in _ID_FIELDS else None
    if isinstance(t, msgspec.inspect.StructType):
        return _STRUCT
    if isinstance(t, (msgspec.inspect.VarTupleType, msgspec.inspect.ListType)) and isinstance(t.item_type, msgspec.inspect.StructType):
        return _STRUCTS
    return None


def _plan(cls: type) -> tuple[tuple[str, int], ...]:
    """The fields of ``cls`` that carry a constraint, with their kind (computed once per class)."""
    plan = _PLANS.get(cls)
    if plan is None:
        info = msgspec.inspect.type_info(cls)
        plan = _PLANS[cls] = tuple((f.name, k) for f in info.fields if (k := _kind(f.name, f.type)) is not None)
    return plan


def _check(obj: msgspec.Struct, path: str) -> None:
    """The wire contract beyond the schema (module docstring); raises DecodeError."""
    bad = _first_violation(obj)
    if bad is not None:
        where, code, what = bad
        raise DecodeError(code, f"{path}{where} {what}")


def _first_violation(obj: msgspec.Struct) -> tuple[str, ReasonCode, str] | None:
    for name, kind in _plan(type(obj)):
        v = getattr(obj, name)
        if v is None:
            continue
        if kind == _DEC:
            if not v.is_finite() or v.is_signed() and v != 0 or v > MAX_DECIMAL:
                return name, _decimal_code(name), f"{str(v)[:40]} is not a finite number in [0, {MAX_DECIMAL}]"
        elif kind == _INT:
            if v < 0 or v > MAX_INT:
                return name, ReasonCode.VALIDATION_INVALID_FIELD, f"{str(v)[:40]} is not in [0, 2**53]"
        elif kind == _FLOAT:
            if not 0.0 <= v <= MAX_TIMESTAMP:  # NaN fails too
                return name, ReasonCode.VALIDATION_INVALID_FIELD, f"{v} is not a timestamp"
        elif kind == _IDSTR:
            if _id_match(v) is None:
                return name, ReasonCode.VALIDATION_INVALID_FIELD, f"{v[:40]!r} is not an id (1..128 of [A-Za-z0-9_-])"
        elif kind == _STRUCT:
            bad = _first_violation(v)
            if bad is not None:
                return f"{name}.{bad[0]}", bad[1], bad[2]
        else:
            for i, x in enumerate(v):
                bad = _first_violation(x)
                if bad is not None:
                    return f"{name}[{i}].{bad[0]}", bad[1], bad[2]
    return None


_id_match = _ID.fullmatch


def decode_fact(data: bytes) -> Fact:
    return decode(data, Fact)


def decode_command(data: bytes) -> Command:
    return decode(data, Command)


def decode_escape(data: bytes) -> EscapeRequest:
    return decode(data, EscapeRequest)
