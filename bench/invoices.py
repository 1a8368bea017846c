"""``threadlog bench invoices``: invoice generation from the DuckDB usage view.

Fills a temporary DuckDB file with ``--rows`` usage rows (the usage view's schema) for
``--users`` users in one billing period, with ``range()`` SQL, then times
``scheduler.invoice_computation.compute_invoices``: the one ``GROUP BY user_id, model``
query plus building every ``InvoiceIssued`` event (lines per model). Appending them to
JetStream is not included (see ``bench append`` for append rates).
Target: 10,000,000 rows / 100,000 users in <= 10 s. Peak RSS is sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from bench._report import PeakRss, now, rate, report
from scheduler.invoice_computation import compute_invoices

MODELS = "['gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet', 'gemini-1.5-pro']"


def fill(con: duckdb.DuckDBPyConnection, rows: int, users: int) -> None:
    con.execute(f"""
        CREATE TABLE usage AS SELECT
          'e' || i::VARCHAR AS event_id, 'c' || i::VARCHAR AS call_id,
          'user' || (i % {users})::VARCHAR AS user_id, 't' || (i % 1000003)::VARCHAR AS thread_id,
          'agent' AS agent_name, {MODELS}[(i // {users}) % 4 + 1] AS model,
          'openai' AS provider, 'completion' AS kind,
          (100 + i % 900)::BIGINT AS prompt_tokens, (20 + i % 400)::BIGINT AS completion_tokens,
          (120 + i % 900 + i % 400)::BIGINT AS total_tokens, (i % 7)::BIGINT AS reasoning_tokens,
          (i % 50)::BIGINT AS cached_input_tokens, 0::BIGINT AS cache_write_tokens,
          ((i % 1000) * 0.000001)::DOUBLE AS cost,
          TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_seconds(i % 2678400) AS at,
          DATE '2025-01-01' AS billing_period, i AS seq
        FROM range({rows}) t(i)""")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench invoices")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=100_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect(str(Path(d) / "bench.duckdb"))
        con.execute("SET enable_progress_bar = false")
        t0 = now()
        fill(con, args.rows, args.users)
        fill_s = now() - t0
        with PeakRss() as rss:
            t0 = now()
            out = compute_invoices(con, "2025-01", datetime(2025, 2, 2, tzinfo=UTC))
            seconds = now() - t0
        con.close()
    assert out.usage_rows == args.rows, "every usage row is on an invoice"
    lines = sum(len(i.lines) for i in out.invoices)
    report("invoices", [
        ("usage rows", args.rows), ("users / invoices", len(out.invoices)),
        ("invoice lines", lines), ("fill (range SQL) s", fill_s),
        ("invoice generation s", seconds), ("usage rows/s", rate(args.rows, seconds)),
        ("peak RSS MB", rss.peak_mb)], {
        "rows": args.rows, "users": args.users, "invoices": len(out.invoices),
        "lines": lines, "fill_s": round(fill_s, 2), "generation_s": round(seconds, 2),
        "rows_per_s": round(rate(args.rows, seconds)), "peak_rss_mb": round(rss.peak_mb, 1),
        "target_s": 10, "meets_target": seconds <= 10})
