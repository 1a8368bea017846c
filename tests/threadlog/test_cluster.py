"""The production shape without Docker: three clustered nats-server processes on loopback
(``threadlog.cluster.LocalCluster``), streams R3, ``sync_interval: always``.

Under a steady append load a follower and then the EVENTS stream's leader are killed
with SIGKILL (``threadlog.cluster_drill``): no acknowledged append is lost, the handlers
answer commands again through their client's reconnect, and each killed node rejoins
and catches up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import nats
import pytest
from nats.aio.client import Client as NATS
from rich.console import Console

from events import EventStore, EventStreamSpec
from handlers import Client
from threadlog.cli_cluster import serve_handlers
from threadlog.cluster import LocalCluster
from threadlog.cluster_drill import (
    Acked,
    AppendLoad,
    lost_acknowledged,
    node_kill_drill,
    stream_leader,
    wait_caught_up,
)
from threadlog.runtime import running
from threadlog.settings import Settings

T = TypeVar("T")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster").start()
    yield c
    c.stop()


@pytest.fixture
async def cluster_nc(cluster: LocalCluster) -> AsyncIterator[NATS]:
    """A service-role connection that knows every node and reconnects for as long as
    the test runs."""
    nc = await cluster.endpoint.connect(max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    yield nc
    await nc.close()


async def eventually(call: Callable[[], Awaitable[T]], timeout: float) -> T:
    """``call()``'s result, retried on errors until it succeeds (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await call()
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_a_node_config_names_every_route_and_syncs_always(cluster: LocalCluster) -> None:
    conf = (cluster.base_dir / "n1" / "server.conf").read_text()
    assert "sync_interval: always" in conf and "server_name: n1" in conf
    assert conf.count("nats-route://") == 3 and "operator:" in conf
    assert sorted(cluster.running()) == ["n1", "n2", "n3"]


async def test_anonymous_connections_are_refused_on_every_node(cluster: LocalCluster) -> None:
    for url in cluster.urls:
        with pytest.raises(Exception, match=r"(?i)authoriz"):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=2)


async def test_a_killed_node_rejoins_and_catches_up(cluster: LocalCluster,
                                                    cluster_nc: NATS) -> None:
    store = EventStore(cluster_nc, EventStreamSpec(name="CATCHUP", replicas=3), timeout=2)
    await store.setup()
    leader = await stream_leader(store)
    follower = next(n for n in cluster.names if n != leader)
    cluster.kill(follower)
    assert follower not in cluster.running()
    load = AppendLoad(store, writers=2).start()
    await load.wait_acked(50, 30)  # a quorum of two keeps acknowledging
    await load.stop()
    assert cluster.stream_state(leader, "CATCHUP")["last_seq"] >= 50  # type: ignore[index]
    cluster.restart(follower)
    await wait_caught_up(cluster, store, follower, timeout=30)
    local = cluster.stream_state(follower, "CATCHUP")
    assert local is not None and local["last_seq"] == await store.last_seq()
    assert await lost_acknowledged(store, load.acked) == []
    # the check sees a message that is not what was acknowledged, and one that is gone
    seq, acked = next(iter(load.acked.items()))
    forged = {seq: Acked(acked.subject, acked.payload + b" "), 10**9: acked}
    assert await lost_acknowledged(store, {**load.acked, **forged}) == [seq, 10**9]


async def test_no_acknowledged_append_is_lost_when_a_node_and_then_the_leader_die(
        cluster: LocalCluster, cluster_nc: NATS, tmp_path: Path) -> None:
    settings = Settings(nats_urls=cluster.urls, nats_creds=cluster.service_creds,
                        data_dir=tmp_path / "data", replicas=3, request_timeout_s=2,
                        nats_down_exit_s=0)
    async with running(settings) as rt:
        js = cluster_nc.jetstream()
        for stream in (settings.events_stream, f"KV_{settings.events_stream}_commands",
                       settings.deltas_stream):
            assert (await js.stream_info(stream)).config.num_replicas == 3, stream
        client = rt.client("u1")
        assert (await client.create_thread(title="before")).seq is not None
        served_after: list[str] = []

        async def handlers_serve(killed: str) -> None:
            res = await eventually(lambda: client.create_thread(title=f"after {killed}"), 30)
            assert res.seq is not None
            served_after.append(killed)

        store = EventStore(cluster_nc, EventStreamSpec(name=settings.events_stream,
                                                       replicas=3), timeout=2)
        # Kill the handlers' own node first (unless it leads the stream: then the
        # leader's kill hits it): their broker connection must reconnect to serve.
        broker_nc = getattr(rt.broker, "_connection")  # noqa: B009 (FastStream private)
        handlers_node = cluster.node_of(broker_nc)
        assert handlers_node is not None
        result = await node_kill_drill(cluster, store, writers=4, steady=50,
                                       first=handlers_node, on_killed=handlers_serve)
        assert handlers_node in result.killed and broker_nc.stats["reconnects"] >= 1
        with contextlib.suppress(Exception):
            print(f"\ncluster drill: {result}")
    assert result.lost == [], f"acknowledged appends lost: {result.lost[:20]}"
    assert result.acknowledged >= 200
    assert len(set(result.killed)) == 2 and served_after == result.killed
    assert 0 < result.unavailable_s < 30 and len(result.unavailable_after_kill_s) == 2
    assert sorted(cluster.running()) == ["n1", "n2", "n3"] and len(result.catch_up_s) == 2


async def test_the_handlers_process_serves_commands_on_the_cluster(
        cluster: LocalCluster, cluster_nc: NATS, tmp_path: Path) -> None:
    settings = Settings(nats_urls=cluster.urls, nats_creds=cluster.service_creds,
                        data_dir=tmp_path / "data", replicas=3, events_stream="EVH",
                        request_timeout_s=2)
    task = asyncio.create_task(serve_handlers(settings, Console(quiet=True)))
    try:
        client = Client(cluster_nc, user_id="u1", timeout=4)
        res = await eventually(lambda: client.create_thread(title="on the cluster"), 30)
        assert res.seq is not None and not task.done()
        info = await cluster_nc.jetstream().stream_info("EVH")
        assert info.config.num_replicas == 3 and info.state.last_seq == res.seq
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
