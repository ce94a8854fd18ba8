"""Pipelined JetStream publishing: one inbox subscription, one future per message, acks decoded once.

nats-py's ``publish_async`` does the same job, but every publish also takes a semaphore, draws random
bytes for its token and parses the ack into a dataclass through ``json``; at the pipeline's message
rates that was a sixth of a stage worker's CPU (docs/bench.md). Here a token is a counter, an ack is
decoded by msgspec straight into :class:`PubAck`, and a publish that never hears back (the connection
dropped with it in flight) fails with :class:`PublishTimeout` after ``timeout`` seconds, so a caller
never waits forever: it naks its input and the message comes back.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from nats.aio.client import Client


class ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct):
    """The server's answer to a JetStream publish (``val``: a counter stream's new total)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    val: str | None = None
    error: ApiError | None = None


_decode_ack = msgspec.json.Decoder(PubAck).decode


class PublishError(Exception):
    """JetStream refused the message (wrong expected sequence, stream full, no stream)."""

    def __init__(self, err_code: int, description: str, code: int = 0) -> None:
        super().__init__(f"{description} (err_code {err_code})")
        self.err_code = err_code
        self.code = code
        self.description = description

    @property
    def wrong_last_sequence(self) -> bool:
        return self.err_code in (10071, 10164)


class PublishTimeout(Exception):
    """No acknowledgement arrived in time: the message may or may not be stored."""


class NoStreamResponse(PublishError):
    """No stream takes the subject (status 503 on the reply)."""


class JsPublisher:
    def __init__(self, nc: Client, timeout: float = 5.0) -> None:
        self.nc = nc
        self.timeout = timeout
        self._prefix = ""
        self._next = 0
        self._pending: dict[str, tuple[asyncio.Future, float]] = {}
        self._sweeper: asyncio.Task | None = None
        self._sub = None

    async def start(self) -> "JsPublisher":
        if self._sub is None:
            self._prefix = self.nc.new_inbox() + "."
            self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_reply)
            self._sweeper = asyncio.create_task(self._sweep())
        return self

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(PublishTimeout("publisher closed"))
        self._pending.clear()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> asyncio.Future:
        """Send one message; the future resolves to its :class:`PubAck` (or raises)."""
        if self._sub is None:
            await self.start()
        self._next += 1
        token = str(self._next)
        fut = asyncio.get_running_loop().create_future()
        self._pending[token] = (fut, time.monotonic() + self.timeout)
        try:
            await self.nc.publish(subject, data, reply=self._prefix + token, headers=headers)
        except BaseException:
            self._pending.pop(token, None)
            raise
        return fut

    async def request(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> PubAck:
        """Publish and wait for the acknowledgement."""
        return await (await self.publish(subject, data, headers))

    async def _on_reply(self, msg) -> None:
        entry = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if entry is None:
            return  # answered after its timeout
        fut = entry[0]
        if fut.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            fut.set_exception(NoStreamResponse(503, f"no stream takes {msg.subject!r}", 503))
            return
        try:
            ack = _decode_ack(msg.data)
        except msgspec.DecodeError as exc:
            fut.set_exception(PublishError(0, f"undecodable publish ack: {exc}"))
            return
        if ack.error is not None:
            fut.set_exception(PublishError(ack.error.err_code, ack.error.description, ack.error.code))
        else:
            fut.set_result(ack)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            # Tokens are issued in order, so the dict is ordered by deadline: stop at the first live one.
            expired = []
            for token, (fut, deadline) in self._pending.items():
                if deadline > now:
                    break
                expired.append(token)
            for token in expired:
                fut, _ = self._pending.pop(token)
                if not fut.done():
                    fut.set_exception(PublishTimeout(f"no JetStream ack within {self.timeout:.1f}s"))
