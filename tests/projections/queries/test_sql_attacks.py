"""Operator SQL cannot write: a corpus of attacks against the real projector.

Each attack runs through :class:`QueryService` (one also over NATS) on a projector with a
real DuckDB file fed by a real nats-server; every table's checksum, DuckDB's settings, the
attached databases, user-defined catalog objects and the files around the database must be
the same afterwards, and the reply must be a structured error. Runaway queries must end
with a limit error within the time limit plus a margin, with bounded memory growth.
"""

from __future__ import annotations

import glob
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from events import EventStore, new_id
from events.replies import Reply
from projections.projector import Projector
from projections.queries import QueryService, SqlLimits
from projections.queries.models import SqlQuery

from ..conftest import Ask
from ..factories import every_event_type, save_message

OUT = "/tmp/tl_sql_attack"
"""Prefix of every path an attack tries to write; nothing may exist there afterwards."""

ATTACKS: dict[str, str] = {
    # DML hidden where the statement type says SELECT
    "cte_delete": "WITH x AS (DELETE FROM messages RETURNING *) SELECT count(*) FROM x",
    "cte_insert": "WITH x AS (INSERT INTO threads (thread_id, user_id) VALUES ('evil', 'e') "
                  "RETURNING *) SELECT * FROM x",
    "cte_update": "WITH x AS (UPDATE threads SET title = 'pwned' RETURNING *) SELECT * FROM x",
    "subquery_cte_delete": "SELECT * FROM (WITH d AS (DELETE FROM usage RETURNING 1) "
                           "SELECT * FROM d)",
    "exists_cte_delete": "SELECT * FROM threads WHERE EXISTS (WITH d AS (DELETE FROM "
                         "tool_calls RETURNING 1) SELECT * FROM d)",
    "union_cte_delete": "SELECT 1 UNION ALL (WITH d AS (DELETE FROM messages RETURNING 1) "
                        "SELECT * FROM d)",
    "delete_returning": "DELETE FROM messages RETURNING *",
    "insert_select": "INSERT INTO threads SELECT * FROM threads",
    "truncate": "TRUNCATE messages",
    # EXPLAIN ANALYZE runs its statement
    "explain_analyze_update": "EXPLAIN ANALYZE UPDATE threads SET title = 'x'",
    "explain_analyze_set": "EXPLAIN ANALYZE SET threads = 1",
    "explain_analyze_reset": "EXPLAIN ANALYZE RESET max_vacuum_tasks",
    "explain_analyze_pragma": "EXPLAIN ANALYZE PRAGMA enable_profiling",
    "explain_comment_hidden": "EXPLAIN /* SELECT */ ANALYZE -- SELECT\n DELETE FROM messages",
    "explain_options": "EXPLAIN (ANALYZE, FORMAT json) DELETE FROM messages",
    "explain_cte_delete": "EXPLAIN ANALYZE WITH x AS (DELETE FROM messages RETURNING *) "
                          "SELECT * FROM x",
    # several statements, comments
    "reader_then_writer": "SELECT 1; DELETE FROM messages",
    "reader_set_reader": "SELECT 1; SET threads = 1; SELECT 2",
    "commit_then_delete": "COMMIT; DELETE FROM messages",
    "comment_hidden": "/* SELECT */ DELETE /* FROM x */ FROM messages -- SELECT 1",
    # settings
    "set": "SET threads = 1",
    "set_global": "SET GLOBAL memory_limit = '1MB'",
    "reset": "RESET memory_limit",
    "set_variable": "SET VARIABLE x = 1",
    "pragma": "PRAGMA enable_profiling",
    "tf_enable_logging": "SELECT * FROM enable_logging()",
    "setseed": "SELECT setseed(0.5)",
    # checkpoints, calls, SQL in strings
    "call_checkpoint": "CALL checkpoint()",
    "tf_checkpoint": "SELECT * FROM checkpoint()",
    "tf_qualified_checkpoint": "SELECT * FROM system.main.checkpoint()",
    "tf_force_checkpoint": "SELECT * FROM force_checkpoint()",
    "checkpoint": "CHECKPOINT",
    "vacuum": "VACUUM",
    "analyze": "ANALYZE",
    "tf_query": "SELECT * FROM query('WITH d AS (DELETE FROM messages RETURNING 1) "
                "SELECT * FROM d')",
    "json_execute": "SELECT * FROM json_execute_serialized_sql(json_serialize_sql("
                    "'SELECT 1'))",
    "nextval": "SELECT nextval('evil_seq')",
    # databases, files, extensions
    "attach_memory": "ATTACH ':memory:' AS evil",
    "attach_file": f"ATTACH '{OUT}.duckdb' AS evil",
    "detach": "DETACH DATABASE IF EXISTS memory",
    "use": "USE system",
    "copy_to": f"COPY threads TO '{OUT}.csv'",
    "copy_query_to": f"COPY (SELECT * FROM messages) TO '{OUT}.parquet' (FORMAT parquet)",
    "copy_from": f"COPY threads FROM '{OUT}.csv'",
    "export": f"EXPORT DATABASE '{OUT}_dir'",
    "copy_database": "COPY FROM DATABASE memory TO system",
    "install": "INSTALL httpfs",
    "load": "LOAD json",
    "read_text": "SELECT * FROM read_text('/etc/passwd')",
    "glob": "SELECT * FROM glob('/etc/*')",
    # catalog objects and transactions
    "macro": "CREATE MACRO evil(a) AS a",
    "temp_macro": "CREATE TEMP MACRO evil(a) AS a",
    "temp_table": "CREATE TEMP TABLE evil AS SELECT 1",
    "drop": "DROP TABLE threads",
    "alter": "ALTER TABLE threads RENAME TO t2",
    "pivot_statement": "PIVOT threads ON status",
    "prepare": "PREPARE p AS DELETE FROM messages",
    "begin": "BEGIN TRANSACTION",
    "rollback": "ROLLBACK",
    # value amplifiers (one DuckDB vector of these is gigabytes)
    "repeat_huge": "SELECT repeat('x', 1000000) FROM range(100000)",
    "repeat_computed": "SELECT repeat('x', range) FROM range(1000000, 1100000)",
    "printf_width": "SELECT printf('%0100000000d', 1)",
    "range_list": "SELECT * FROM unnest(range(1000000000))",
}


@pytest.fixture
async def seeded(store: EventStore, projector: Projector) -> int:
    """One event of every type plus a few messages, projected."""
    user, thread, mid = "u_" + new_id()[:8], new_id(), new_id()
    last = 0
    for agg, ev in every_event_type(user, thread, mid):
        last = (await store.append(agg, [ev], user_id=user)).last_seq
    for i in range(1, 6):
        _, last = await save_message(store, user, thread, i, text=f"m{i}")
    await projector.wait_for(last, timeout=10)
    return last


@pytest.fixture
def service(projector: Projector) -> QueryService:
    return QueryService(projector, sql_limits=SqlLimits(max_rows=1000, time_limit_s=2.0))


async def sql(service: QueryService, text: str) -> Reply:
    return await service.execute("sql", SqlQuery(user_id="op", sql=text))


def state(p: Projector) -> dict[str, Any]:
    """Checksums of every table and view, the settings, the catalog's user objects,
    attached databases and files that an attack could have touched."""
    cur = p.cursor()
    try:
        tables = [r[0] for r in cur.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        out: dict[str, Any] = {t: cur.execute(
            f'SELECT count(*), sum(hash(t)::HUGEINT) FROM "{t}" t').fetchone()
            for t in tables}
        for q in ("SELECT name, value FROM duckdb_settings() ORDER BY 1",
                  "SELECT database_name, readonly FROM duckdb_databases() ORDER BY 1",
                  "SELECT function_name FROM duckdb_functions() WHERE NOT internal",
                  "SELECT type_name FROM duckdb_types() WHERE NOT internal",
                  "SELECT sequence_name FROM duckdb_sequences()"):
            out[q] = cur.execute(q).fetchall()
    finally:
        cur.close()
    out["files"] = sorted(glob.glob(f"{OUT}*"))
    db = Path(p.config.db_path)
    out["db_dir"] = sorted(x.name for x in db.parent.iterdir() if x.name != f"{db.name}.wal")
    return out


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_changes_nothing_and_is_a_structured_error(
        attack: str, seeded: int, projector: Projector, service: QueryService) -> None:
    before = state(projector)
    assert before["threads"][0] >= 1 and before["messages"][0] >= 6
    r = await sql(service, ATTACKS[attack])
    assert not r.ok and r.error, attack
    assert r.error.code in ("sql_forbidden", "sql_error"), r.error
    assert r.error.message
    assert state(projector) == before
    r = await sql(service, "SELECT count(*) FROM messages")  # still serving, same data
    assert r.ok and r.result["rows"] == [[before["messages"][0]]]


async def test_attacks_are_refused_before_running(seeded: int, service: QueryService) -> None:
    """Every attack except the file-path ones is stopped by the guard (``sql_forbidden``),
    not by a failure inside DuckDB."""
    codes = {a: (await sql(service, text)).error for a, text in ATTACKS.items()}
    assert {a: e.code for a, e in codes.items() if e and e.code != "sql_forbidden"} == {}
    assert all(e and "read-only" in e.message for e in codes.values())


async def test_an_attack_over_nats_gets_a_structured_error(seeded: int, projector: Projector,
                                                           ask: Ask) -> None:
    before = state(projector)
    r = await ask("sql", {"user_id": "op", "sql": ATTACKS["cte_delete"]})
    assert r.error and r.error.code == "sql_forbidden" and "DELETE" in r.error.message
    assert state(projector) == before


READERS = (
    "SELECT t.thread_id, count(m.message_id) AS n FROM threads t "
    "LEFT JOIN messages m USING (thread_id) GROUP BY ALL ORDER BY n DESC",
    "SELECT role, sum(total_tokens), avg(length(text)) FROM messages GROUP BY role",
    "SELECT message_id, row_number() OVER (PARTITION BY thread_id ORDER BY \"order\") AS rn, "
    "lag(text) OVER (ORDER BY \"order\") FROM messages QUALIFY rn <= 3",
    "WITH per AS (SELECT thread_id, count(*) n FROM messages GROUP BY 1) "
    "SELECT max(n) FROM per",
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 10) "
    "SELECT sum(i) FROM r",
    "SELECT 1 AS a UNION ALL SELECT 2 EXCEPT SELECT 2",
    "EXPLAIN SELECT * FROM messages WHERE thread_id = 'x'",
    "EXPLAIN ANALYZE SELECT count(*) FROM messages",
    "/* a comment */ EXPLAIN -- another\n SELECT 1",
    "DESCRIBE messages", "SHOW TABLES", "SHOW ALL TABLES", "SUMMARIZE usage",
    "FROM threads SELECT thread_id, title",
    "SELECT * FROM duckdb_settings() WHERE name = 'threads'",
    "SELECT table_name FROM duckdb_tables()", "SELECT * FROM pragma_table_info('threads')",
    "SELECT lpad(title, 12, '.'), printf('%5d', 42), repeat('-', 20) FROM threads",
    "SELECT * FROM range(10) t(i) JOIN generate_series(1, 5) g(j) ON i = j",
    "SELECT current_setting('threads'), version()",
    "SELECT 1; SELECT 2 AS two",
)


@pytest.mark.parametrize("text", READERS)
async def test_ordinary_reads_still_work(text: str, seeded: int,
                                         service: QueryService) -> None:
    r = await sql(service, text)
    assert r.ok, (text, r.error)
    assert r.result["columns"] and r.result["row_count"] >= 1


@pytest.fixture
def rss_peak() -> Iterator[list[int]]:
    """``[base, peak]`` resident memory of this process while the test runs (sampled)."""
    proc = psutil.Process()
    box = [proc.memory_info().rss] * 2
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            box[1] = max(box[1], proc.memory_info().rss)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    yield box
    done.set()
    t.join()


RUNAWAY = {
    "string_agg_growth": "SELECT length(string_agg(repeat('x', 10000), '')) "
                         "FROM range(10000000)",
    "list_growth": "SELECT len(list(repeat('x', 10000))) FROM range(10000000)",
    "recursive_doubling": "WITH RECURSIVE r(s, n) AS (SELECT repeat('x', 10000), 0 UNION ALL "
                          "SELECT s || s, n + 1 FROM r WHERE n < 40) SELECT max(length(s)) "
                          "FROM r",
    "wide_rows": "SELECT repeat('x', 10000) || range FROM range(100000000)",
    "cross_join": "SELECT count(*) FROM range(100000000) a, range(100000) b "
                  "WHERE a.range + b.range < 0",
    "sort_spill": "SELECT * FROM (SELECT repeat('x', 1000) || range AS s FROM "
                  "range(100000000)) ORDER BY s DESC LIMIT 1",
}


@pytest.mark.parametrize("name", sorted(RUNAWAY))
async def test_runaway_queries_end_in_time_with_bounded_memory(
        name: str, seeded: int, service: QueryService, rss_peak: list[int]) -> None:
    limit = service.sql_limits.time_limit_s
    t0 = time.monotonic()
    r = await sql(service, RUNAWAY[name])
    elapsed = time.monotonic() - t0
    growth_mb = (rss_peak[1] - rss_peak[0]) >> 20
    print(f"{name}: {r.error.code if r.error else 'ok'} in {elapsed:.2f}s, "
          f"RSS +{growth_mb} MB")
    assert r.error and r.error.code in (
        "sql_timeout", "sql_memory_limit", "sql_row_limit", "sql_result_limit"), r.error
    assert elapsed <= limit + 3
    assert growth_mb < 1536
    r = await sql(service, "SELECT 42")  # the next query runs (the slot was released)
    assert r.ok and r.result["rows"] == [[42]]


async def test_the_reported_reproduction_is_refused_at_once(
        seeded: int, service: QueryService, rss_peak: list[int]) -> None:
    t0 = time.monotonic()
    r = await sql(service, ATTACKS["repeat_huge"])
    assert r.error and r.error.code == "sql_forbidden" and "repeat" in r.error.message
    assert time.monotonic() - t0 < 1 and (rss_peak[1] - rss_peak[0]) < 100 << 20


async def test_results_are_bounded_in_bytes(seeded: int, projector: Projector) -> None:
    service = QueryService(projector, sql_limits=SqlLimits(max_result_bytes=1 << 20))
    r = await sql(service, "SELECT repeat('x', 10000) FROM range(200)")
    assert r.error and r.error.code == "sql_result_limit"
    r = await sql(service, "SELECT repeat('x', 10000) FROM range(50)")
    assert r.ok and r.result["row_count"] == 50



async def test_the_state_comparison_sees_a_write(seeded: int, projector: Projector) -> None:
    """Control: the checksums do change when a table or a setting really changes."""
    before = state(projector)
    cur = projector.cursor()
    try:
        cur.execute("UPDATE threads SET title = title || '!'")
        assert state(projector) != before
        cur.execute("UPDATE threads SET title = rtrim(title, '!')")
        assert state(projector) == before
        cur.execute("SET GLOBAL max_expression_depth = 999")
        assert state(projector) != before
    finally:
        cur.execute("RESET GLOBAL max_expression_depth")
        cur.close()
