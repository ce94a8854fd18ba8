"""Names of keys in the shared KV buckets, for every worker that reads or writes them.

KV ``LEDGER`` (written by the ledger worker only; precheck reads positions): ``pos.<symbol>.<strategy>``
(public position JSON) and ``pbook.<symbol>.<strategy>`` (the position slot).
"""

from __future__ import annotations

import re

_BAD = re.compile(r"[^-_=.a-zA-Z0-9]")


def key_part(s: str) -> str:
    """A KV-safe key token: ``/`` → ``_``, ``:`` → ``=``, anything else outside
    ``[-_=.a-zA-Z0-9]`` → ``_``."""
    return _BAD.sub("_", s.replace("/", "_").replace(":", "="))


def pos_key(symbol: str, strategy_id: str) -> str:
    return f"pos.{key_part(symbol)}.{key_part(strategy_id)}"


def pbook_key(symbol: str, strategy_id: str) -> str:
    return f"pbook.{key_part(symbol)}.{key_part(strategy_id)}"
