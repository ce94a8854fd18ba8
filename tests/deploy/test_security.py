"""Security of the shipped deployment, proven against a REAL nats-server.

The server runs the exact files compose ships — ``compose/nats.conf`` including
``deploy/nats-auth.conf`` (the Kubernetes ConfigMap is byte-identical, see test_manifests) — with
only the listen/monitor/store lines pointed at this machine, plus TLS with client certificates
(a throw-away CA generated here with ``cryptography``). Passwords are generated per run.

Covered: user/password + TLS (+ mTLS), token and NKey authentication through ``bus.settings``;
per-worker publish/subscribe permissions (a precheck identity cannot send venue orders; no service
identity may create/update/delete/purge streams); the admin provisions, workers only verify; the
AUDIT stream refuses purge even for the admin; the whole pipeline runs under least privilege
without a single permission violation; and no password or token leaks into reprs, URLs, CLI errors
or logs.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus.server import free_port, port_open, server_binary
from bus.settings import NatsSettings, connect
from bus.topology import BUCKETS, CONSUMERS, COORDINATOR_CONSUMERS, KV_SAFETY, STREAMS, ensure_topology, verify_topology
from tests.conftest import wait_for, wait_for_sync

pytest.importorskip("cryptography", reason="the TLS tests need cryptography (pip install -r requirements-deploy.txt)")
pytest.importorskip("yaml", reason="pip install -r requirements-deploy.txt")

REPO = Path(__file__).resolve().parents[2]
AUTH_CONF = REPO / "deploy" / "nats-auth.conf"
COMPOSE_NATS_CONF = REPO / "compose" / "nats.conf"
PY = sys.executable

# user -> the environment variable its password comes from, as the shipped file declares them
USERS: dict[str, str] = dict(re.findall(r"\{\s*user:\s*([\w-]+),\s*password:\s*\$(\w+)", AUTH_CONF.read_text()))
SERVICE_USERS = [u for u in USERS if u != "admin"]


# ---- a throw-away PKI ------------------------------------------------------------------------------
def _make_pki(d: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k, path: Path) -> None:
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        path.chmod(0o600)

    def name(cn: str):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = key()
    ca = (
        x509.CertificateBuilder().subject_name(name("jetexec test CA")).issuer_name(name("jetexec test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage, san=None):
        k = key()
        b = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject).public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return k, b.sign(ca_key, hashes.SHA256())

    skey, scert = leaf("nats", ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    ckey, ccert = leaf("jetexec-worker", ExtendedKeyUsageOID.CLIENT_AUTH)
    out = {n: d / f"{n}.pem" for n in ("ca", "server", "server-key", "client", "client-key")}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["server"].write_bytes(scert.public_bytes(serialization.Encoding.PEM))
    out["client"].write_bytes(ccert.public_bytes(serialization.Encoding.PEM))
    write_key(skey, out["server-key"])
    write_key(ckey, out["client-key"])
    return out


# ---- the secured server ----------------------------------------------------------------------------
@dataclass
class Secured:
    dir: Path
    port: int
    monitor_port: int
    passwords: dict[str, str]
    pki: dict[str, Path]
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.dir / "nats-server.log"

    def env(self, user: str | None, *, client_cert: bool = True) -> dict[str, str]:
        """The JETEXEC_NATS_* environment a deployment gives this identity."""
        env = {"JETEXEC_NATS_URL": self.url, "JETEXEC_NATS_TLS_CA": str(self.pki["ca"])}
        if client_cert:
            env |= {"JETEXEC_NATS_TLS_CERT": str(self.pki["client"]), "JETEXEC_NATS_TLS_KEY": str(self.pki["client-key"])}
        if user:
            env |= {"JETEXEC_NATS_USER": user, "JETEXEC_NATS_PASSWORD": self.passwords[user]}
        return env

    def settings(self, user: str | None, **kw) -> NatsSettings:
        return NatsSettings.from_env(env=self.env(user, **kw))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_secured(d: Path) -> Secured:
    """compose/nats.conf + deploy/nats-auth.conf side by side (as compose mounts them), plus TLS."""
    d.mkdir(parents=True, exist_ok=True)
    port, mport = free_port(), free_port()
    conf = COMPOSE_NATS_CONF.read_text()
    for old, new in (
        ("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}"),
        ("http: 0.0.0.0:8222", f"http: 127.0.0.1:{mport}"),
        ("store_dir: /data", f'store_dir: "{d / "jetstream"}"'),
    ):
        assert conf.count(old) == 1, f"compose/nats.conf no longer has {old!r}: update this test"
        conf = conf.replace(old, new)
    (d / "nats.conf").write_text(conf)
    shutil.copy(AUTH_CONF, d / "nats-auth.conf")
    pki = _make_pki(d)
    (d / "server.conf").write_text(
        "include ./nats.conf\n"
        "tls {\n"
        f'  cert_file: "{pki["server"]}"\n  key_file: "{pki["server-key"]}"\n  ca_file: "{pki["ca"]}"\n'
        "  verify: true\n  timeout: 2\n}\n"
    )
    # nats-server parses the variable's value as a config token: start with a letter (see nats-auth.conf)
    passwords = {u: "p" + secrets.token_urlsafe(18) for u in USERS}
    env = {**os.environ, **{var: passwords[u] for u, var in USERS.items()}}
    log = open(d / "nats-server.log", "ab")
    proc = subprocess.Popen([server_binary(), "-c", str(d / "server.conf")], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    log.close()
    s = Secured(d, port, mport, passwords, pki, proc)
    try:
        wait_for_sync(lambda: proc.poll() is not None or port_open("127.0.0.1", port), timeout=15, what="nats-server to listen")
        assert proc.poll() is None, (d / "nats-server.log").read_text()
    except BaseException:
        s.stop()
        raise
    return s


async def provision_as_admin(s: Secured) -> None:
    nc = await connect(s.settings("admin"), "jetexec-provision", max_reconnect=1)
    try:
        js = nc.jetstream(timeout=10)
        await ensure_topology(js)
        kv = await js.key_value(KV_SAFETY)
        await kv.put("mode", b"PAPER")
    finally:
        await nc.drain()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    s = start_secured(tmp_path_factory.mktemp("secured"))
    asyncio.run(provision_as_admin(s))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """Same configuration, never provisioned: permission probes here have no side effects."""
    s = start_secured(tmp_path_factory.mktemp("bare"))
    yield s
    s.stop()


class Conn:
    """A connection that records the asynchronous errors the server sends (permission violations)."""

    def __init__(self, nc) -> None:
        self.nc = nc
        self.errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        nc._error_cb = on_error  # noqa: SLF001 - bus.settings.connect installs a quiet callback

    @classmethod
    async def open(cls, settings: NatsSettings, name: str = "probe") -> "Conn":
        return cls(await connect(settings, name, max_reconnect=1))

    async def barrier(self) -> None:
        """A request/reply round trip on this connection (every identity may ask ``$JS.API.INFO``).

        The server queues a violation's ``-ERR`` while it processes the offending operation, i.e.
        before it even reads the request behind it, so once the reply is here the verdict is final.
        (A bare flush is not enough: nats-py occasionally resolves it on an earlier PONG.)
        """
        from nats.errors import NoRespondersError

        await self.nc.flush(timeout=5)
        try:
            await self.nc.request("$JS.API.INFO", b"", timeout=5)
        except NoRespondersError:  # a server without JetStream answers "no responders": a reply all the same
            pass

    async def publish_denied(self, subject: str, payload: bytes = b"") -> bool:
        self.errors.clear()
        await self.nc.publish(subject, payload)
        await self.barrier()
        # nats-py lower-cases the server's error text
        return any("permissions violation for publish" in e.lower() and f'"{subject.lower()}"' in e.lower() for e in self.errors)

    async def subscribe_denied(self, subject: str) -> bool:
        self.errors.clear()
        sub = await self.nc.subscribe(subject)
        await self.barrier()
        denied = any("permissions violation for subscription" in e.lower() and f'"{subject.lower()}"' in e.lower() for e in self.errors)
        await sub.unsubscribe()
        return denied

    async def close(self) -> None:
        await self.nc.close()


# ---- CLI runs that take a while (60 reconnect attempts): started first, checked later ------------
@pytest.fixture(scope="module", autouse=True)
def slow_cli_runs(secured):
    """Start the CLI failure runs at module start so they overlap the other tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETEXEC_")}
    env["PYTHONUNBUFFERED"] = "1"
    closed = free_port()
    runs = {
        # the brief's case: an unreachable server, credentials in the URL
        "closed_port": subprocess.Popen(
            [PY, "-m", "jetexec.cli", "status", "X", "--nats-url", f"nats://user:secret@127.0.0.1:{closed}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO,
        ),
        # a reachable, secured server and a wrong password for a real user
        "wrong_password": subprocess.Popen(
            [PY, "-m", "jetexec.cli", "status", "X", "--nats-url", f"tls://operator:wrongsecret-{secrets.token_hex(4)}@127.0.0.1:{secured.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env, **{k: v for k, v in secured.env(None).items() if k != "JETEXEC_NATS_URL"}}, cwd=REPO,
        ),
    }
    yield runs
    for p in runs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


# ---- authentication paths ---------------------------------------------------------------------------
def test_every_worker_and_the_ledger_has_its_own_user():
    from workers import WORKERS

    assert set(WORKERS) | {"ledger"} <= set(USERS), "a worker without a NATS user of its own"
    assert len(set(USERS.values())) == len(USERS), "two users share a password variable"
    assert {"admin", "client", "operator"} <= set(USERS)


async def test_user_password_over_mutual_tls_connects_from_the_environment(secured):
    s = secured.settings("precheck")
    assert (s.user, s.tls_ca, s.tls_cert, s.tls_key) == ("precheck", str(secured.pki["ca"]), str(secured.pki["client"]), str(secured.pki["client-key"]))
    nc = await connect(s, "jetexec-precheck", max_reconnect=1)
    try:
        assert nc.is_connected
        assert nc.connected_url.scheme == "tls"
        assert await verify_topology(nc.jetstream(timeout=5)) == []  # what a worker does with JETEXEC_SKIP_PROVISION=1
    finally:
        await nc.close()


@pytest.mark.parametrize(
    "case",
    ["no credentials", "wrong password", "no client certificate"],
)
async def test_server_refuses_bad_credentials_and_missing_client_certificate(secured, case):
    if case == "no credentials":
        s = secured.settings(None)
    elif case == "wrong password":
        s = NatsSettings.from_env(env={**secured.env("precheck"), "JETEXEC_NATS_PASSWORD": "not-the-password"})
    else:
        s = secured.settings("precheck", client_cert=False)
    with pytest.raises(Exception):
        nc = await connect(s, "intruder", connect_timeout=2, max_reconnect=1)
        await nc.close()


async def test_token_authentication(tmp_path):
    token = secrets.token_urlsafe(24)
    conf = tmp_path / "token.conf"
    conf.write_text(f'listen: 127.0.0.1:{(port := free_port())}\nauthorization {{ token: "{token}" }}\n')
    proc = subprocess.Popen([server_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: port_open("127.0.0.1", port), timeout=10, what="token server")
        url = f"nats://127.0.0.1:{port}"
        s = NatsSettings.from_env(env={"JETEXEC_NATS_URL": url, "JETEXEC_NATS_TOKEN": token})
        assert s.token == token and token not in repr(s)
        nc = await connect(s, "token-client", max_reconnect=1)
        assert nc.is_connected
        await nc.close()
        with pytest.raises(Exception):
            await connect(NatsSettings(url=url, token="wrong-" + token), "bad", connect_timeout=2, max_reconnect=1)
    finally:
        proc.terminate()
        proc.wait(10)


async def test_nkey_authentication(tmp_path):
    nkeys = pytest.importorskip("nkeys")
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(seed).public_key.decode()
    seed_file = tmp_path / "worker.nk"
    seed_file.write_bytes(seed)
    seed_file.chmod(0o600)
    conf = tmp_path / "nkey.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{(port := free_port())}\n"
        f'authorization {{ users = [ {{ nkey: {public}, permissions: {{ publish: ["exec.evt.*", "$JS.API.INFO"], subscribe: "_INBOX.>" }} }} ] }}\n'
    )
    proc = subprocess.Popen([server_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: port_open("127.0.0.1", port), timeout=10, what="nkey server")
        url = f"nats://127.0.0.1:{port}"
        s = NatsSettings.from_env(env={"JETEXEC_NATS_URL": url, "JETEXEC_NATS_NKEY_SEED": str(seed_file)})
        assert seed.decode() not in repr(s)  # the settings carry the file path, never the seed
        c = await Conn.open(s)
        try:
            assert not await c.publish_denied("exec.evt.c1")
            assert await c.publish_denied("venue.api.new")  # permissions apply to NKey users too
        finally:
            await c.close()
        with pytest.raises(Exception):  # no seed: refused
            await connect(NatsSettings(url=url), "anonymous", connect_timeout=2, max_reconnect=1)
    finally:
        proc.terminate()
        proc.wait(10)


# ---- authorization -----------------------------------------------------------------------------------
async def test_precheck_identity_cannot_publish_venue_orders(secured):
    venue = await Conn.open(secured.settings("paper-exchange"), "venue")
    precheck = await Conn.open(secured.settings("precheck"), "jetexec-precheck")
    try:
        seen: list[str] = []

        async def on_msg(msg) -> None:
            seen.append(msg.subject)

        await venue.nc.subscribe("venue.api.>", cb=on_msg)
        await venue.nc.flush()
        assert await precheck.publish_denied("venue.api.new", b'{"client_order_id":"rogue","qty":"1000000"}')
        # a request is refused the same way: nothing reaches the venue, the requester gets no reply
        with pytest.raises(Exception):
            await precheck.nc.request("venue.api.new", b"{}", timeout=0.5)
        # an allowed subject from the same connection afterwards: NATS keeps one publisher's order,
        # so once this arrives, the refused ones would have arrived before it
        assert not await precheck.publish_denied("venue.api.specs", b"{}")
        await wait_for(lambda: "venue.api.specs" in seen, timeout=10, what="the allowed sentinel at the venue")
        assert "venue.api.new" not in seen
        log = secured.log.read_text()
        assert re.search(r'"\$G/user:precheck" - Publish Violation - Subject "venue\.api\.new"', log), "the server logs who tried"
    finally:
        await precheck.close()
        await venue.close()


async def test_workers_may_not_create_update_delete_or_purge_streams(secured):
    # one audit record, written by the only identity allowed to
    ledger = await connect(secured.settings("ledger"), "jetexec-ledger", max_reconnect=1)
    ack = await ledger.jetstream(timeout=5).publish("exec.audit.sec1", b'{"audit":1}', headers={"Nats-Msg-Id": "sec1.audit"})
    assert ack.stream == "AUDIT"
    await ledger.close()
    admin = await connect(secured.settings("admin"), "admin", max_reconnect=1)
    js = admin.jetstream(timeout=5)
    before = {s.name: (await js.stream_info(s.name)).state.messages for s in STREAMS}
    assert before["AUDIT"] >= 1
    for user in SERVICE_USERS:
        c = await Conn.open(secured.settings(user), f"jetexec-{user}")
        try:
            for api in (
                "$JS.API.STREAM.PURGE.AUDIT",
                "$JS.API.STREAM.DELETE.AUDIT",
                "$JS.API.STREAM.DELETE.EXEC_EVT",
                "$JS.API.STREAM.UPDATE.EXEC_CMD",
                "$JS.API.STREAM.CREATE.ROGUE",
                "$JS.API.STREAM.MSG.DELETE.AUDIT",
                "$JS.API.CONSUMER.DURABLE.CREATE.EXEC_CMD.rogue",
                # every durable consumer: nobody deletes it, nobody but its owner pulls from it
                *(f"$JS.API.CONSUMER.DELETE.{x.stream}.{x.durable}" for x in CONSUMERS.values()),
                *(nxt(x.stream, x.durable) for name, x in CONSUMERS.items() if owner_of(name) != user),
            ):
                assert await c.publish_denied(api, b"{}"), f"{user} may send {api}"
            # the library call a worker would make is refused too: no answer, the stream stays
            with pytest.raises(Exception):
                await c.nc.jetstream(timeout=0.3).purge_stream("AUDIT")
        finally:
            await c.close()
    after = {s.name: (await js.stream_info(s.name)).state.messages for s in STREAMS}
    assert after == before
    for c in CONSUMERS.values():
        await js.consumer_info(c.stream, c.durable)  # all still there
    await admin.close()


async def test_audit_refuses_purge_even_for_admin(secured):
    admin = await Conn.open(secured.settings("admin"), "admin")
    js = admin.nc.jetstream(timeout=5)
    try:
        if (await js.stream_info("AUDIT")).state.messages == 0:
            ledger = await connect(secured.settings("ledger"), "jetexec-ledger", max_reconnect=1)
            await ledger.jetstream(timeout=5).publish("exec.audit.sec2", b"{}", headers={"Nats-Msg-Id": "sec2.audit"})
            await ledger.close()
        before = (await js.stream_info("AUDIT")).state.messages
        from nats.js.errors import APIError

        with pytest.raises(APIError) as err:
            await js.purge_stream("AUDIT")  # the admin MAY ask (permissions allow it) ...
        assert "purge not permitted" in (err.value.description or "")  # ... the stream itself says no (deny_purge)
        # deleting the append-only logs is withheld from the admin by permissions
        assert await admin.publish_denied("$JS.API.STREAM.DELETE.AUDIT")
        assert await admin.publish_denied("$JS.API.STREAM.DELETE.EXEC_EVT")
        info = await js.stream_info("AUDIT")
        assert info.state.messages == before and info.config.deny_purge and info.config.deny_delete
    finally:
        await admin.close()


async def test_admin_provisions_and_workers_cannot(secured, bare):
    # `secured` was provisioned by the admin: every stream, consumer and bucket is there
    nc = await connect(secured.settings("monitor"), "jetexec-monitor", max_reconnect=1)
    try:
        assert await verify_topology(nc.jetstream(timeout=5)) == []
    finally:
        await nc.close()
    # on a fresh server a worker identity cannot create the topology (what JETEXEC_SKIP_PROVISION=1 avoids)
    c = await Conn.open(bare.settings("coordinator"), "jetexec-coordinator")
    try:
        with pytest.raises(Exception):
            await ensure_topology(c.nc.jetstream(timeout=1))
        assert any("permissions violation for publish" in e.lower() and "stream.create" in e.lower() for e in c.errors)
        assert await verify_topology(c.nc.jetstream(timeout=5)) == [f"stream {s.name}" for s in STREAMS] + [
            f"consumer {x.stream}/{x.durable}" for x in CONSUMERS.values()
        ] + [f"bucket {b.name}" for b in BUCKETS]
    finally:
        await c.close()


# The permission matrix of docs/security.md, probed subject by subject. "ack(S, d)" is a JetStream
# ack subject of durable d on stream S; "get(B)" a direct KV read of bucket B.
def ack(stream: str, durable: str) -> str:
    return f"$JS.ACK.{stream}.{durable}.1.7.7.1700000000000000000.0"


def get(bucket: str) -> str:
    return f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.k"


def owner_of(consumer: str) -> str:
    """The worker that pulls from a durable consumer (every coordinator-p<N> is the coordinator's)."""
    return "coordinator" if consumer in COORDINATOR_CONSUMERS else consumer


def nxt(stream: str, durable: str) -> str:
    return f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"


MATRIX: dict[str, dict[str, list[str]]] = {
    "gateway": {
        "pub_allow": ["exec.evt.c1", "venue.api.specs", get("SAFETY"), "$JS.API.STREAM.INFO.EXEC_EVT"],
        "pub_deny": ["venue.api.new", "exec.cmd.precheck.c1", "exec.escape.all", "$KV.SAFETY.state", nxt("EXEC_CMD", "precheck"), "_INBOX.stolen", get("EXECUTIONS")],
        "sub_allow": ["exec.intake", "venue.md.AAPL", "_INBOX.abc", "exec.load"],
        "sub_deny": ["exec.evt.*", "venue.api.new", ">"],
    },
    "coordinator": {
        "pub_allow": [
            "exec.cmd.split.c1", "exec.escape.c1", "exec.evt.c1", "exec.dlq.coordinator", "exec.audit.c1", "exec.result.c1", "exec.load", "$KV.EXECUTIONS.c1", "$KV.COORD.cp.0",
            nxt("EXEC_EVT", "coordinator-p0"), ack("EXEC_EVT", "coordinator-p7"), "$JS.API.CONSUMER.UNPIN.EXEC_EVT.coordinator-p3", "$JS.API.CONSUMER.CREATE.EXEC_EVT", "$JS.API.CONSUMER.DELETE.EXEC_EVT.eph1", get("EXECUTIONS"), get("COORD"),
        ],
        "pub_deny": [
            "venue.api.new", "venue.api.cancel", "$KV.SAFETY.state", nxt("EXEC_EVT", "ledger"), ack("EXEC_EVT", "ledger"), "exec.dlq.split",
            "$JS.API.CONSUMER.DELETE.EXEC_EVT.coordinator-p0", "$JS.API.CONSUMER.DELETE.EXEC_EVT.coordinator-p7", "$JS.API.CONSUMER.DELETE.EXEC_EVT.ledger",
            "$JS.API.CONSUMER.CREATE.EXEC_EVT.ledger.exec.evt.>", "$JS.API.CONSUMER.UNPIN.EXEC_EVT.ledger",
        ],
        "sub_allow": ["_INBOX.abc", "exec.ctl.record.c1", "exec.ctl.live"],
        "sub_deny": ["exec.cmd.>", "venue.md.AAPL", "exec.result.*", ">"],
    },
    "precheck": {
        "pub_allow": [nxt("EXEC_CMD", "precheck"), ack("EXEC_CMD", "precheck"), "exec.evt.c1", "exec.dlq.precheck", "venue.api.specs", "exec.count.trades.s1.20261202", "exec.count.notional.s1.20261202", get("SAFETY"), get("LEDGER"), "$JS.API.CONSUMER.CREATE.KV_SAFETY.w1.$KV.SAFETY.>", "$JS.API.CONSUMER.CREATE.KV_LEDGER"],
        "pub_deny": ["venue.api.new", "venue.api.cancel", "venue.api.modify", nxt("EXEC_CMD", "split"), ack("EXEC_CMD", "split"), "$KV.SAFETY.state", "$KV.LEDGER.pos.AAPL.s1", "exec.cmd.send.c1", "exec.dlq.split", "_INBOX.stolen", get("EXECUTIONS")],
        "sub_allow": ["venue.md.AAPL", "_INBOX.abc"],
        "sub_deny": ["venue.api.>", "exec.intake", ">"],
    },
    "split": {
        "pub_allow": [nxt("EXEC_CMD", "split"), ack("EXEC_CMD", "split"), "exec.evt.c1", "venue.api.specs", "venue.api.profile"],
        "pub_deny": ["venue.api.new", nxt("EXEC_CMD", "send"), "$KV.SAFETY.state", "exec.cmd.send.c1"],
        "sub_allow": ["_INBOX.abc"],
        "sub_deny": ["venue.md.AAPL", ">"],
    },
    "send": {
        "pub_allow": [nxt("EXEC_CMD", "send"), ack("EXEC_CMD", "send"), "exec.evt.c1", "venue.api.new", "venue.api.query", "venue.report.c1", get("SAFETY")],
        "pub_deny": ["venue.api.cancel", "venue.api.modify", "$KV.SAFETY.halt.ALL", "exec.cmd.send.c1", nxt("EXEC_CMD", "adjust")],
        "sub_allow": ["venue.md.AAPL", "_INBOX.abc"],
        "sub_deny": ["venue.report.*", ">"],
    },
    "monitor": {
        "pub_allow": [nxt("VENUE_RPT", "monitor"), ack("VENUE_RPT", "monitor"), "exec.evt.c1", "exec.dlq.monitor"],
        "pub_deny": ["venue.api.new", "venue.report.c1", "exec.cmd.split.c1", get("SAFETY")],
        "sub_allow": ["_INBOX.abc"],
        "sub_deny": ["venue.report.*", ">"],
    },
    "adjust": {
        "pub_allow": [nxt("EXEC_CMD", "adjust"), ack("EXEC_CMD", "adjust"), "exec.evt.c1", "venue.api.modify", "venue.api.specs", get("SAFETY")],
        "pub_deny": ["venue.api.new", "venue.api.cancel", "$KV.SAFETY.halt.c1"],
        "sub_allow": ["venue.md.AAPL", "_INBOX.abc"],
        "sub_deny": [">"],
    },
    "escape": {
        "pub_allow": [nxt("EXEC_ESCAPE", "escape"), ack("EXEC_ESCAPE", "escape"), "exec.evt.c1", "venue.api.cancel", "venue.api.new", "$KV.SAFETY.halt.ALL", "$KV.SAFETY.state", get("EXECUTIONS"), get("COORD"), "exec.ctl.record.c1", "exec.ctl.live", "$JS.API.CONSUMER.INFO.EXEC_ESCAPE.escape"],
        "pub_deny": ["venue.api.modify", "$KV.EXECUTIONS.c1", "$KV.COORD.cp.0", "exec.cmd.send.c1", nxt("EXEC_CMD", "send")],
        "sub_allow": ["_INBOX.abc"],
        "sub_deny": ["exec.escape.*", ">"],
    },
    "ledger": {
        "pub_allow": [
            nxt("EXEC_EVT", "ledger"), ack("EXEC_EVT", "ledger"), "exec.audit.c1", "exec.evt.c1", "exec.dlq.ledger", "$KV.LEDGER.pos.AAPL.s1", get("LEDGER"),
            "venue.api.query", "venue.api.stats", "venue.api.fills", "venue.api.tape", "$JS.API.STREAM.MSG.GET.EXEC_EVT", get("SAFETY"),
            "$JS.API.CONSUMER.CREATE.KV_LEDGER", nxt("KV_LEDGER", "eph1"), "$JS.API.CONSUMER.DELETE.KV_LEDGER.eph1",
        ],
        "pub_deny": [
            "venue.api.new", "venue.api.cancel", "venue.api.modify", "venue.api.faults", "$KV.EXECUTIONS.c1", "$KV.SAFETY.state",
            nxt("EXEC_EVT", "coordinator-p0"), "$JS.API.CONSUMER.DELETE.EXEC_EVT.coordinator-p0", "$JS.API.CONSUMER.DELETE.EXEC_EVT.ledger",
            "$JS.API.CONSUMER.CREATE.EXEC_EVT.coordinator-p0.exec.evt.0.*", "$JS.API.STREAM.MSG.GET.AUDIT",
        ],
        "sub_allow": ["venue.md.AAPL", "_INBOX.abc", "exec.result.c1"],
        "sub_deny": ["exec.evt.*", ">"],
    },
    "paper-exchange": {
        "pub_allow": ["venue.report.c1", "venue.md.AAPL", "$KV.PAPER_VENUE.meta", get("PAPER_VENUE")],
        "pub_deny": ["exec.evt.c1", "venue.api.new", "$KV.SAFETY.state", "_INBOX.stolen"],
        "sub_allow": ["venue.api.new", "venue.api.>", "_INBOX.abc"],
        "sub_deny": ["exec.>", ">"],
    },
    "client": {
        "pub_allow": ["exec.intake", "venue.api.symbols", get("EXECUTIONS"), "exec.ctl.record.c1"],
        "pub_deny": ["exec.escape.all", "$KV.SAFETY.state", "venue.api.new", "exec.evt.c1", get("LEDGER")],
        "sub_allow": ["_INBOX.abc", "exec.result.c1"],
        "sub_deny": ["exec.evt.*", ">"],
    },
    "operator": {
        "pub_allow": [
            "exec.intake", "exec.escape.all", "exec.escape.c1", "$KV.SAFETY.state", "$KV.SAFETY.halt.ALL", "$KV.SAFETY.risk_hook", get("EXECUTIONS"), get("LEDGER"),
            "$JS.API.CONSUMER.CREATE.AUDIT", nxt("AUDIT", "eph1"), "$JS.API.CONSUMER.DELETE.EXEC_EVT.eph1", "$JS.API.STREAM.MSG.GET.EXEC_EVT",
        ],
        "pub_deny": [
            "venue.api.new", "venue.api.cancel", "exec.evt.c1", "$KV.EXECUTIONS.c1", "$KV.SAFETY.mode", "$KV.LEDGER.pos.AAPL.s1",
            "$JS.API.CONSUMER.DELETE.EXEC_EVT.coordinator-p0", "$JS.API.CONSUMER.DELETE.EXEC_EVT.coordinator-p7", nxt("EXEC_EVT", "coordinator-p5"),
            nxt("EXEC_EVT", "ledger"), "$JS.API.CONSUMER.CREATE.EXEC_EVT.ledger.exec.evt.*",
            "$JS.API.CONSUMER.CREATE.EXEC_CMD",
        ],
        "sub_allow": ["_INBOX.abc", "exec.result.c1"],
        "sub_deny": [">"],
    },
    "admin": {
        "pub_allow": ["$JS.API.STREAM.CREATE.PROBE", "$JS.API.STREAM.UPDATE.PROBE", "$JS.API.STREAM.PURGE.EXEC_DLQ", "$KV.SAFETY.mode"],
        "pub_deny": ["$JS.API.STREAM.DELETE.AUDIT", "$JS.API.STREAM.DELETE.EXEC_EVT", "venue.api.new", "exec.evt.c1", "exec.escape.all"],
        "sub_allow": ["_INBOX.abc"],
        "sub_deny": [">"],
    },
}


def test_matrix_covers_every_user():
    assert set(MATRIX) == set(USERS)


@pytest.mark.parametrize("user", list(MATRIX))
async def test_permission_matrix(bare, user):
    m = MATRIX[user]
    c = await Conn.open(bare.settings(user), f"jetexec-{user}")
    try:
        wrong = [f"publish {s} should be allowed" for s in m["pub_allow"] if await c.publish_denied(s)]
        wrong += [f"publish {s} should be denied" for s in m["pub_deny"] if not await c.publish_denied(s)]
        wrong += [f"subscribe {s} should be allowed" for s in m["sub_allow"] if await c.subscribe_denied(s)]
        wrong += [f"subscribe {s} should be denied" for s in m["sub_deny"] if not await c.subscribe_denied(s)]
        assert c.nc.is_connected  # violations are reported, never fatal to the connection
    finally:
        await c.close()
    assert not wrong, f"{user}: {wrong}"


# ---- the whole pipeline under least privilege -------------------------------------------------------------
async def test_pipeline_runs_under_least_privilege_without_a_single_violation(tmp_path, monkeypatch, caplog):
    """Every worker with its own identity over mTLS, topology from the admin, an order via `client`,
    a halt and resume via `operator`: it completes, and the server logged no permission violation."""
    from jetexec.client import JetexecClient
    from workers import WORKERS, load_worker

    caplog.set_level(logging.DEBUG)
    s = start_secured(tmp_path / "e2e")
    apps = []
    try:
        # the provisioning Job's exact command, configured only through the environment (user,
        # password, TLS CA and client certificate), like the Job and the compose service
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JETEXEC_", "OTEL_"))} | s.env("admin")
        res = await asyncio.to_thread(
            subprocess.run, [PY, "-m", "jetexec.cli", "provision", "--mode", "paper"], capture_output=True, timeout=120, env=env, cwd=REPO
        )
        assert res.returncode == 0 and b"topology provisioned" in res.stdout, res.stderr.decode()[-2000:]
        assert s.passwords["admin"] not in (res.stdout + res.stderr).decode()
        monkeypatch.setenv("JETEXEC_SKIP_PROVISION", "1")
        # run the ledger's periodic reconciliation and snapshot inside this short test too
        monkeypatch.setenv("JETEXEC_RECON_INTERVAL_S", "0.5")
        monkeypatch.setenv("JETEXEC_SNAPSHOT_INTERVAL_S", "0.5")
        for name in WORKERS:
            app = load_worker(name)(s.settings(name))
            await app.start()
            apps.append(app)
        assert all(a.health.ready and a.health.connected for a in apps)

        client = await JetexecClient.open(settings=s.settings("client"))
        try:
            receipt = await client.submit({"symbol": "AAPL", "side": "BUY", "qty": 5, "strategy_id": "least-privilege"}, timeout=20)
            assert receipt.accepted
            result = await client.wait(receipt.correlation_id, timeout=30)
            assert result.state.value == "COMPLETE" and str(result.filled_qty) == "5", result
        finally:
            await client.close()

        operator = await JetexecClient.open(settings=s.settings("operator"))
        try:
            await operator.halt()
            safety = await operator.js.key_value(KV_SAFETY)

            async def fenced() -> bool:
                try:
                    return bool((await safety.get("halt.ALL")).value)
                except Exception:
                    return False

            await wait_for(fenced, timeout=20, what="the escape worker's HALT fence")
            await operator.resume()
            assert (await safety.get("state")).value == b"NORMAL"
        finally:
            await operator.close()
    finally:
        for app in reversed(apps):
            await app.stop()
        s.stop()
    log = s.log.read_text()
    assert "Violation" not in log, "\n".join(line for line in log.splitlines() if "Violation" in line)
    assert "Authorization Error" not in log
    text = caplog.text + log
    leaked = [u for u, pw in s.passwords.items() if pw in text]
    assert not leaked, f"passwords of {leaked} appear in logs"


# ---- a worker process, configured exactly like a container ----------------------------------------------
def test_worker_process_with_env_credentials_is_ready_then_drains_within_15s(secured):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JETEXEC_", "OTEL_"))}
    env |= secured.env("monitor") | {"JETEXEC_SKIP_PROVISION": "1", "JETEXEC_METRICS_PORT": str(port), "JETEXEC_METRICS_HOST": "127.0.0.1", "JETEXEC_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([PY, "-m", "jetexec.cli", "worker", "monitor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    try:
        wait_for_sync(lambda: proc.poll() is not None or status("/readyz") == 200, timeout=30, what="/readyz 200")
        assert proc.poll() is None, proc.stderr.read().decode()
        assert status("/healthz") == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            assert b"jetexec_pull_loop_last_progress_seconds" in r.read()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
        assert time.monotonic() - started <= 15, "drain took longer than the 15 s the manifests budget for"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert secured.passwords["monitor"] not in (out + err).decode()


# ---- no secret in reprs, URLs, CLI errors or logs -------------------------------------------------------
SECRET_ENV = {
    "JETEXEC_NATS_URL": "nats://alice:s3cr3t-pw@n1.example:4222,tls://bob:t0p-secret@n2.example:4223,nats://n3.example",
    "JETEXEC_NATS_USER": "alice", "JETEXEC_NATS_PASSWORD": "s3cr3t-pw", "JETEXEC_NATS_TOKEN": "tok-3n",
}


def test_redacted_url_and_credential_fields_hold_no_secret():
    s = NatsSettings.from_env(env=SECRET_ENV)
    assert s.redacted_url() == "nats://n1.example:4222,tls://n2.example:4223,nats://n3.example"
    shown = repr(s).replace(s.url, "")  # the URL field is covered by the next test
    for secret in ("s3cr3t-pw", "t0p-secret", "tok-3n"):
        assert secret not in shown


def test_settings_repr_holds_no_password_from_the_url():
    s = NatsSettings.from_env(env=SECRET_ENV)
    for secret in ("s3cr3t-pw", "t0p-secret", "alice:", "bob:"):
        assert secret not in repr(s), f"{secret!r} in {s!r}"


def _cli_failure(p: subprocess.Popen, secret: str) -> list[str]:
    out, err = p.communicate(timeout=90)
    text = (out + err).decode()
    assert p.returncode != 0
    assert secret not in text, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), text
    return lines


@pytest.fixture(scope="module")
def wrong_password_run(slow_cli_runs):
    return _cli_failure(slow_cli_runs["wrong_password"], "wrongsecret")


def test_cli_error_for_unreachable_server_is_one_line_without_the_password(slow_cli_runs):
    lines = _cli_failure(slow_cli_runs["closed_port"], "secret")
    assert len(lines) == 1, lines
    assert "user" not in lines[0]  # not even the user name of the URL


def test_cli_error_for_wrong_password_names_the_server_not_the_password(wrong_password_run, secured):
    assert f"127.0.0.1:{secured.port}" in wrong_password_run[-1]
    log = secured.log.read_text()
    assert 'authentication error - User "operator"' in log  # the server did refuse it
    assert all(pw not in log for pw in secured.passwords.values())


def test_cli_error_for_wrong_password_over_tls_is_one_line(wrong_password_run):
    assert len(wrong_password_run) == 1, wrong_password_run[:3]


def test_shipped_files_hold_no_secret():
    """compose and k8s carry placeholders and references only."""
    import yaml

    for path in (REPO / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                values = list((doc.get("stringData") or {}).values()) + list((doc.get("data") or {}).values())
                assert values and all(str(v).startswith("CHANGE-ME") for v in values), f"{path}: a Secret with a real-looking value"
    compose = (REPO / "compose" / "docker-compose.yml").read_text()
    assert not re.search(r"^[ \t]*\w*PASSWORD\w*:[ \t]+[^ \t$]", compose, re.M), "a literal password in docker-compose.yml"
    assert re.search(r"password:\s*\$NATS_PASSWORD_", AUTH_CONF.read_text())
    assert not re.search(r"password:[ \t]*[^ \t$]", AUTH_CONF.read_text()), "a literal password in nats-auth.conf"
    for line in (REPO / "compose" / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            assert line.split("=", 1)[1].startswith("change-me"), line

