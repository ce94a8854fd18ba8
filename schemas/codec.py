"""Encoding and edge validation for wire messages (JSON via msgspec).

Decoders raise :class:`DecodeError` carrying a reason code, so a worker can answer or dead-letter a
bad message with the reason instead of crashing.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from schemas.enums import ReasonCode
from schemas.messages import SCHEMA_VERSION, Command, EscapeRequest, Fact

T = TypeVar("T")

MAX_MESSAGE_BYTES = 256 * 1024

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
    return obj


def decode_fact(data: bytes) -> Fact:
    return decode(data, Fact)


def decode_command(data: bytes) -> Command:
    return decode(data, Command)


def decode_escape(data: bytes) -> EscapeRequest:
    return decode(data, EscapeRequest)
