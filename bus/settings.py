"""Connection settings from the environment, and one way to connect.

Variables (all optional): ``JETEXEC_NATS_URL`` (default ``nats://127.0.0.1:4222``; comma-separated
for a cluster), ``JETEXEC_NATS_USER`` / ``JETEXEC_NATS_PASSWORD``, ``JETEXEC_NATS_TOKEN``,
``JETEXEC_NATS_CREDS`` (a .creds file), ``JETEXEC_NATS_NKEY_SEED`` (a seed file),
``JETEXEC_NATS_TLS_CA`` / ``JETEXEC_NATS_TLS_CERT`` / ``JETEXEC_NATS_TLS_KEY``.
Secrets never appear in ``repr`` or log lines (see :meth:`NatsSettings.redacted_url`).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client

DEFAULT_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class NatsSettings:
    url: str = DEFAULT_URL
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __repr__(self) -> str:
        # Never the password: the URL is shown without any user:password@, secrets not at all.
        return (
            f"NatsSettings(url={self.redacted_url()!r}, creds_file={self.creds_file!r}, nkey_seed_file={self.nkey_seed_file!r}, "
            f"tls_ca={self.tls_ca!r}, tls_cert={self.tls_cert!r}, tls_key={self.tls_key!r})"
        )

    @classmethod
    def from_env(cls, url: str | None = None, env: dict[str, str] | None = None) -> "NatsSettings":
        e = os.environ if env is None else env
        return cls(
            url=url or e.get("JETEXEC_NATS_URL") or DEFAULT_URL,
            user=e.get("JETEXEC_NATS_USER") or None,
            password=e.get("JETEXEC_NATS_PASSWORD") or None,
            token=e.get("JETEXEC_NATS_TOKEN") or None,
            creds_file=e.get("JETEXEC_NATS_CREDS") or None,
            nkey_seed_file=e.get("JETEXEC_NATS_NKEY_SEED") or None,
            tls_ca=e.get("JETEXEC_NATS_TLS_CA") or None,
            tls_cert=e.get("JETEXEC_NATS_TLS_CERT") or None,
            tls_key=e.get("JETEXEC_NATS_TLS_KEY") or None,
        )

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]

    def redacted_url(self) -> str:
        """The URL with any user:password@ removed, safe for logs and error messages."""
        out = []
        for u in self.servers:
            parts = urlsplit(u)
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            out.append(urlunsplit((parts.scheme, netloc, parts.path, "", "")))
        return ",".join(out)

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


ENV_VARS = tuple(
    "JETEXEC_NATS_" + n
    for n in ("URL", "USER", "PASSWORD", "TOKEN", "CREDS", "NKEY_SEED", "TLS_CA", "TLS_CERT", "TLS_KEY")
)
assert len(fields(NatsSettings)) == len(ENV_VARS)


async def connect(settings: NatsSettings, name: str, *, connect_timeout: float = 2.0, max_reconnect: int = -1) -> Client:
    """Connect with reconnect-forever semantics (a worker outlives server restarts)."""

    async def _quiet(_exc: Exception) -> None:  # the runtime's liveness tracks progress, not callbacks
        return None

    opts: dict = dict(
        servers=settings.servers,
        name=name,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=max_reconnect,
        reconnect_time_wait=0.25,
        allow_reconnect=True,
        error_cb=_quiet,
        pending_size=64 * 1024 * 1024,
    )
    if settings.user:
        opts["user"] = settings.user
        opts["password"] = settings.password or ""
    if settings.token:
        opts["token"] = settings.token
    if settings.creds_file:
        opts["user_credentials"] = settings.creds_file
    if settings.nkey_seed_file:
        opts["nkeys_seed"] = settings.nkey_seed_file
    tls = settings.tls_context()
    if tls is not None:
        opts["tls"] = tls
    return await nats.connect(**opts)
