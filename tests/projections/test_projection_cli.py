"""``threadlog projections rebuild|status|export`` and ``threadlog sql`` on a real file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow.parquet as pq
import typer
from typer.testing import CliRunner

from bench.rebuild import fill
from events import EventStore
from threadlog.cli_projections import projections_app, sql_command
from threadlog.embedded_nats import EmbeddedNats

runner = CliRunner()


def _fill(srv: EmbeddedNats, stream: str, n: int) -> int:
    async def go() -> int:
        nc = await srv.endpoint.connect()
        try:
            return (await fill(nc, stream, n, seed=3))[0]
        finally:
            await nc.close()

    return asyncio.run(go())


def test_rebuild_status_export_and_sql_offline(store: EventStore, nats_server: EmbeddedNats,
                                              tmp_path: Path) -> None:
    last = _fill(nats_server, store.stream, 3000)
    common = ["--nats-url", nats_server.url, "--creds", str(nats_server.service_creds),
              "--db", str(tmp_path / "v.duckdb"), "--stream", store.stream]
    r = runner.invoke(projections_app, ["rebuild", *common])
    assert r.exit_code == 0, r.output
    assert "rebuilt threads, messages, tool_calls, usage" in r.output

    r = runner.invoke(projections_app, ["status", *common, "--json"])
    status = json.loads(r.stdout)
    assert status["checkpoint"] == last and status["lag"] == 0
    assert {v["view"] for v in status["views"]} >= {"threads", "messages", "usage"}

    r = runner.invoke(projections_app, ["rebuild", *common, "--view", "messages"])
    assert r.exit_code == 0 and "rebuilt messages" in r.output

    r = runner.invoke(projections_app, ["rebuild", *common, "--view", "nope"])
    assert r.exit_code == 1 and "unknown view 'nope'" in r.output

    out = tmp_path / "parquet"
    r = runner.invoke(projections_app, ["export", "--parquet", str(out), "--db",
                                        str(tmp_path / "v.duckdb")])
    assert r.exit_code == 0, r.output
    assert pq.read_table(out / "messages.parquet").num_rows > 0
    assert pq.read_table(out / "_projection_views.parquet").num_rows >= 4

    app = typer.Typer()
    app.command("sql")(sql_command)
    app.command("noop")(lambda: None)
    db = ["--db", str(tmp_path / "v.duckdb")]
    r = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM messages", "--json", *db])
    assert r.exit_code == 0, r.output
    n = json.loads(r.stdout)["rows"][0][0]
    assert n == pq.read_table(out / "messages.parquet").num_rows
    r = runner.invoke(app, ["sql", "SELECT role, count(*) FROM messages GROUP BY 1", *db])
    assert r.exit_code == 0 and "assistant" in r.output
    r = runner.invoke(app, ["sql", "DROP TABLE messages", "--json", *db])
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == "sql_forbidden"
