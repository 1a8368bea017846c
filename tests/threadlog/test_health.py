"""``threadlog health`` and ``ops.health`` over the real server: a serving runtime is
ready (exit 0); a failing projector is not (exit 1); no process answering is one line
and exit 1; users cannot ask."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest
import typer
from typer.testing import CliRunner, Result

from handlers.rate_limits import bucket_name
from projections.health import ProjectorHealth
from tests.conftest import ConnectAs, RuntimeFactory
from threadlog.cli_health import embedded_urls, health_command, verdict
from threadlog.embedded_nats import EmbeddedNats
from threadlog.health import HEALTH_SUBJECT, ConnectionMonitor, ask_health, readiness
from threadlog.parts import projector_part
from threadlog.runtime import Runtime, running
from threadlog.settings import Settings

app = typer.Typer()
app.command("health")(health_command)


@contextlib.asynccontextmanager
async def serving(runtime_factory: RuntimeFactory, nats_server: EmbeddedNats, **kwargs: Any
                  ) -> AsyncIterator[Runtime]:
    """A runtime (its rate-limit bucket deleted afterwards: the factory does not know it)."""
    async with runtime_factory(**kwargs) as rt:
        try:
            yield rt
        finally:
            conn = await nats_server.endpoint.connect()
            with contextlib.suppress(Exception):
                await conn.jetstream().delete_key_value(
                    bucket_name(rt.settings.events_stream))
            await conn.close()


async def cli(*args: str) -> Result:
    """The command as the CLI runs it (its own event loop, in a thread)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


def deployment(nats_server: EmbeddedNats, creds: Path | None = None) -> list[str]:
    return ["--nats-url", nats_server.url, "--creds", str(creds or nats_server.service_creds)]


class RetryingProjector:
    """Stands in for a projector whose writes fail (disk full): only its health."""

    def health(self) -> ProjectorHealth:
        return ProjectorHealth(state="retrying", checkpoint=41, stream_last_seq=50, lag=9,
                               last_error="IOException: No space left on device",
                               since=datetime.now(UTC))


async def test_a_serving_runtime_is_ready_and_health_exits_0(
        runtime_factory: RuntimeFactory, nats_server: EmbeddedNats, tmp_path: Path,
        connect_as: ConnectAs) -> None:
    async with serving(runtime_factory, nats_server, extra_parts=[projector_part]):
        ops = await connect_as("operator", "oscar")
        answers = await ask_health(ops.nc, timeout=5)
        assert [a["process"]["pid"] for a in answers] == [os.getpid()]
        mine = answers[0]
        assert mine["ready"] is True and mine["reasons"] == []
        assert mine["connection"]["connected"] and mine["connection"]["server"]
        assert mine["handlers"]["started"] and mine["handlers"]["active"] > 10
        assert "projector" in mine["handlers"]["parts"]
        assert mine["projector"]["state"] in ("starting", "running")
        creds = nats_server.issue("operator", "oscar2", tmp_path / "oscar2.creds")
        res = await cli(*deployment(nats_server, creds), "--json")
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert out["healthy"] is True and len(out["processes"]) == 1
        table = await cli(*deployment(nats_server))
        assert table.exit_code == 0 and "1 of 1 process(es) ready" in table.output


async def test_a_failing_projector_makes_the_process_not_ready(
        runtime_factory: RuntimeFactory, nats_server: EmbeddedNats) -> None:
    async with serving(runtime_factory, nats_server) as rt:
        rt.parts["projector"] = RetryingProjector()
        res = await cli(*deployment(nats_server), "--json")
        assert res.exit_code == 1, res.output
        out = json.loads(res.output)
        [proc] = out["processes"]
        assert out["healthy"] is False and proc["ready"] is False
        assert proc["projector"]["state"] == "retrying" and proc["projector"]["lag"] == 9
        assert proc["reasons"] == ["projector retrying: IOException: No space left on device"]
        table = await cli(*deployment(nats_server))
        assert table.exit_code == 1 and "No space left" in table.output


async def test_no_process_answering_is_one_line_and_exit_1(nats_server: EmbeddedNats
                                                           ) -> None:
    res = await cli(*deployment(nats_server), "--timeout", "0.3")
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "unhealthy: no threadlog process answered on ops.health"]
    down = await cli("--nats-url", "nats://127.0.0.1:1", "--creds",
                     str(nats_server.service_creds), "--timeout", "0.5", "--json")
    assert down.exit_code == 1
    out = json.loads(down.output)
    assert out["healthy"] is False and "cannot connect" in out["summary"]


async def test_a_user_cannot_ask_health(runtime_factory: RuntimeFactory,
                                        nats_server: EmbeddedNats,
                                        connect_as: ConnectAs) -> None:
    async with serving(runtime_factory, nats_server):
        user = await connect_as("user", "uma")
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await user.nc.request(HEALTH_SUBJECT, b"{}", timeout=0.5)
        await user.violation(HEALTH_SUBJECT)
        app_conn = await connect_as("app", "backend")
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await app_conn.nc.request(HEALTH_SUBJECT, b"{}", timeout=0.5)
        await app_conn.violation(HEALTH_SUBJECT)


def test_readiness_names_each_reason() -> None:
    down = {"connected": False, "down_for_s": 12.0}
    half = {"started": False, "active": 3, "subscriptions": 40}
    assert readiness(down, half, {"state": "unavailable", "healthy": False,
                                  "last_error": None}) == [
        "NATS unreachable for 12.0 s", "3 of 40 subscriptions active",
        "projector unavailable"]
    assert readiness({"connected": True, "down_for_s": 0.0},
                     {"started": True, "active": 1, "subscriptions": 1}, None) == []


def test_the_monitor_keeps_the_last_outage() -> None:
    class Conn:
        is_connected = True
        stats: dict[str, Any] = {"reconnects": 2}
        connected_url = None

    conn = Conn()
    mon = ConnectionMonitor(lambda: [conn])
    assert mon.to_dict()["last_outage"] is None
    conn.is_connected = False
    mon.sample()
    assert not mon.to_dict()["connected"] and mon.to_dict()["last_outage"]["ended_at"] is None
    conn.is_connected = True
    got = mon.to_dict()
    assert got["connected"] and got["reconnects"] == 2 and got["down_for_s"] == 0.0
    assert got["last_outage"]["ended_at"] is not None and got["last_outage"]["duration_s"] >= 0


def test_local_counts_only_this_hosts_processes_and_expect_counts_them() -> None:
    import socket

    here = {"process": {"hostname": socket.gethostname(), "pid": 1}, "ready": True}
    there = {"process": {"hostname": "elsewhere", "pid": 2}, "ready": False}
    assert verdict([here, there], local=False, expect=1)[0] is False
    assert verdict([here, there], local=True, expect=1)[:2] == (True, [here])
    assert verdict([there], local=True, expect=1)[0] is False
    assert verdict([here], local=False, expect=2) == (
        False, [here], "1 of 1 process(es) ready; expected 2")


def test_the_embedded_servers_url_comes_from_its_ports_file(tmp_path: Path) -> None:
    ports = tmp_path / "nats" / "ports"
    ports.mkdir(parents=True)
    (ports / f"nats-server_{os.getpid()}.ports").write_text(
        json.dumps({"nats": ["nats://127.0.0.1:4333"]}))
    (ports / "nats-server_999999999.ports").write_text(
        json.dumps({"nats": ["nats://127.0.0.1:4444"]}))  # no such process
    assert embedded_urls(tmp_path) == ["nats://127.0.0.1:4333"]
    assert embedded_urls(tmp_path / "nowhere") == []


async def test_health_reports_the_outage_after_nats_restarts(fresh_nats_server: EmbeddedNats,
                                                            tmp_path: Path) -> None:
    settings = Settings(nats_urls=[fresh_nats_server.url],
                        nats_creds=fresh_nats_server.service_creds, data_dir=tmp_path)
    async with running(settings):
        fresh_nats_server.stop()
        fresh_nats_server.start()  # same port, same store
        ops = fresh_nats_server.endpoint_for("operator", "olga", tmp_path / "olga.creds")
        conn = await ops.connect()
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while True:  # bounded: until the process is back and serving
                answers = await ask_health(conn, timeout=1.0)
                if answers and answers[0]["ready"]:
                    break
                assert asyncio.get_running_loop().time() < deadline, answers
        finally:
            await conn.close()
        connection = answers[0]["connection"]
        assert connection["connected"] and connection["reconnects"] >= 1
        outage = connection["last_outage"]
        assert outage["ended_at"] is not None and outage["duration_s"] > 0
