"""Export every view's tables to Parquet files (``<dir>/<table>.parquet``).

Rows stream through Arrow record batches (bounded memory) and are written by pyarrow, so
the database itself never needs file-system access (it is opened with external access
disabled). Each table is read in one snapshot; tables are exported one after another, so
a projector applying events meanwhile may leave them at slightly different checkpoints:
``_projection_views.parquet`` records each view's checkpoint at export time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from projections.view import View
from projections.views import VIEWS


def export_parquet(con: duckdb.DuckDBPyConnection, out_dir: str | Path,
                   views: Sequence[View] = VIEWS) -> dict[str, int]:
    """Write each table of ``views`` and the checkpoints; return rows written per table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = ["_projection_views", *(t for v in views for t in v.table_names)]
    counts: dict[str, int] = {}
    for table in tables:
        cur = con.cursor()
        try:
            reader: Any = cur.sql(f'SELECT * FROM "{table}"').to_arrow_reader(100_000)
            tmp = out / f".{table}.parquet.tmp"
            n = 0
            with pq.ParquetWriter(tmp, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    n += batch.num_rows
            tmp.replace(out / f"{table}.parquet")
            counts[table] = n
        finally:
            cur.close()
    return counts
