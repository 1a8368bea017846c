"""Read-only analytical SQL: readers pass, every writer class is rejected, limits hold."""

from __future__ import annotations

import pytest

from events import EventStore
from projections.projector import Projector

from .conftest import Ask
from .factories import create_thread, save_message

FORBIDDEN = {
    "CREATE": "CREATE TABLE x (a INT)",
    "CREATE AS": "CREATE TABLE x AS SELECT * FROM threads",
    "ALTER": "ALTER TABLE threads ADD COLUMN x INT",
    "DROP": "DROP TABLE threads",
    "INSERT": "INSERT INTO threads (thread_id) VALUES ('x')",
    "UPDATE": "UPDATE threads SET title = 'x'",
    "DELETE": "DELETE FROM messages",
    "ATTACH": "ATTACH '/tmp/other.duckdb' AS o",
    "DETACH": "DETACH o",
    "COPY TO": "COPY threads TO '/tmp/threads.csv'",
    "COPY FROM": "COPY threads FROM '/tmp/threads.csv'",
    "EXPORT": "EXPORT DATABASE '/tmp/dump'",
    "INSTALL": "INSTALL httpfs",
    "LOAD": "LOAD httpfs",
    "PRAGMA": "PRAGMA database_list",
    "SET": "SET threads = 1",
    "RESET": "RESET threads",
    "CALL": "CALL pragma_version()",
    "CHECKPOINT": "CHECKPOINT",
    "VACUUM": "VACUUM",
    "TRANSACTION": "BEGIN TRANSACTION",
    "PREPARE": "PREPARE p AS SELECT 1",
    "MACRO": "CREATE MACRO m(a) AS a",
    "reader then writer": "SELECT 1; DELETE FROM messages",
    "writer then reader": "DROP TABLE usage; SELECT 1",
}


@pytest.fixture
async def seeded(store: EventStore, projector: Projector) -> int:
    thread, _ = await create_thread(store, "alice")
    seq = 0
    for i in range(5):
        _, seq = await save_message(store, "alice", thread, i)
    await projector.wait_for(seq, timeout=10)
    return seq


def snapshot(p: Projector) -> dict[str, list[tuple[object, ...]]]:
    cur = p.cursor()
    tables = [r[0] for r in cur.execute(
        "SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
    return {t: sorted(cur.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
            for t in tables}


async def test_each_forbidden_statement_class_is_rejected_and_nothing_changes(
        seeded: int, projector: Projector, ask: Ask) -> None:
    before = snapshot(projector)
    for name, sql in FORBIDDEN.items():
        r = await ask("sql", {"user_id": "op", "sql": sql})
        assert not r.ok and r.error, name
        assert r.error.code == "sql_forbidden", (name, r.error)
        assert "read-only" in r.error.message
    assert snapshot(projector) == before


async def test_readers_pass(seeded: int, ask: Ask) -> None:
    for sql in ("SELECT count(*) AS n FROM messages",
                "WITH x AS (SELECT * FROM messages) SELECT count(*) FROM x",
                "FROM threads SELECT thread_id", "EXPLAIN SELECT * FROM usage",
                "DESCRIBE messages", "SHOW TABLES", "SUMMARIZE usage",
                "SELECT 1; SELECT 2 AS two"):
        r = await ask("sql", {"user_id": "op", "sql": sql})
        assert r.ok, (sql, r.error)
        assert r.result["columns"]
    r = await ask("sql", {"user_id": "op", "sql": "SELECT count(*) AS n FROM messages"})
    assert r.result["rows"] == [[5]] and r.result["columns"] == ["n"]
    assert r.seq is not None and r.seq >= seeded


async def test_file_reading_table_functions_are_blocked(seeded: int, ask: Ask) -> None:
    # table functions outside the guard's allowlist of readers are refused before running
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM glob('/etc/*')",
                "SELECT * FROM read_parquet('/tmp/x.parquet')"):
        r = await ask("sql", {"user_id": "op", "sql": sql})
        assert r.error and r.error.code == "sql_forbidden", sql
        assert "read_" in r.error.message or "glob" in r.error.message
    # a file path as a table name passes the guard; DuckDB (external access off) refuses it
    r = await ask("sql", {"user_id": "op", "sql": "SELECT * FROM '/etc/passwd.csv'"})
    assert r.error and r.error.code == "sql_error" and "root:" not in r.error.message


async def test_bad_sql_and_unknown_views_are_clear_errors(seeded: int, ask: Ask) -> None:
    r = await ask("sql", {"user_id": "op", "sql": "SELEC * FROM threads"})
    assert r.error and r.error.code == "sql_error" and "syntax" in r.error.message.lower()
    r = await ask("sql", {"user_id": "op", "sql": "SELECT * FROM no_such_view"})
    assert r.error and r.error.code == "sql_error" and "no_such_view" in r.error.message
    r = await ask("sql", {"user_id": "op", "sql": "   "})
    assert r.error and r.error.code == "sql_error"


async def test_row_and_time_limits(seeded: int, ask: Ask) -> None:
    r = await ask("sql", {"user_id": "op", "sql": "SELECT * FROM range(1001)"})
    assert r.error and r.error.code == "sql_row_limit" and r.error.details["max_rows"] == 1000
    r = await ask("sql", {"user_id": "op", "sql": "SELECT * FROM range(10)", "max_rows": 3})
    assert r.error and r.error.code == "sql_row_limit"
    r = await ask("sql", {"user_id": "op", "sql": "SELECT * FROM range(1000)"})
    assert r.ok and r.result["row_count"] == 1000
    slow = "SELECT count(*) FROM range(100000000) a, range(100000) b WHERE a.range + b.range < 0"
    r = await ask("sql", {"user_id": "op", "sql": slow})
    assert r.error and r.error.code == "sql_timeout", r.error
