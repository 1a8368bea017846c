"""Erasure on disk: after a thread's content is deleted from the views, its bytes leave the
DuckDB file and its WAL too (invariant 8).

What was measured (duckdb 2.0, a table of 100k messages, 10 MB file, 6 marker strings in
one thread, checkpointed into the main file first, then the thread's rows deleted; the raw
bytes of every file in the directory scanned afterwards):

========================================== ============ ================================
after the DELETE                            markers left  cost
========================================== ============ ================================
``CHECKPOINT`` / ``FORCE CHECKPOINT``       6 of 6        2 ms (only truncates the WAL)
``VACUUM`` + ``CHECKPOINT``                 6 of 6        18 ms
rewrite the table (CTAS, DROP, RENAME)      6 of 6        112 ms (freed blocks keep bytes)
copy into a new file, rename (this)         0 of 6        219 ms
========================================== ============ ================================

DuckDB never zeroes a freed block: deleted rows stay in their row group until it is
rewritten, and a rewritten row group's old blocks join the free list with their bytes
(reused later, not wiped). Only a new file holds no freed block. So :func:`compact`
copies every table (keys and indexes included) into ``<file>.compact`` with ``COPY FROM
DATABASE`` on a private in-memory DuckDB (the projector's own connection has external
access disabled), fsyncs it and renames it over the file; the old inode, WAL included,
is gone. In the projector (all views, 300k mixed events, 123k messages, 27 MB file
compacted to 20 MB): ~550 ms from the ``thread_deleted``'s append to erased on disk,
~25 ms per MB of file, during which queries wait and no batch is applied.

That cost is why the projector debounces it (``ProjectorConfig.erasure_delay_s``: every
deletion applied within the window is erased by one compaction), runs it only when a
tombstone actually removed stored rows (:func:`note_removed`: the DELETE's own row
count, free) and never while catching up (then once caught up, or when a rebuild
ends). A rebuild from a log whose deleted threads were purged deletes nothing and never
compacts.

Limits: this erases file contents as seen through the file system. Blocks the file
system freed (the old inode) keep their bytes on the device until reused; SSD wear
levelling may keep copies too. Use an encrypted volume where that matters. DuckDB's
spill directory (``<file>.tmp``) only exists during large operations and is removed
after them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import duckdb

PENDING_KEY = "erasure_pending"
"""``_projection_meta`` keys starting with this hold the sequence of a tombstone whose
rows were deleted but whose bytes may still be on disk (written with the deletion, in the
same transaction, so a crash before compaction compacts on the next open)."""


def scratch(path: Path) -> Path:
    return path.with_name(path.name + ".compact")


def remove_scratch(path: Path) -> None:
    """Remove a compaction interrupted by a crash (the original file is intact)."""
    for p in (scratch(path), Path(f"{scratch(path)}.wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def compact(path: Path) -> None:
    """Copy the closed database at ``path`` into a new file and atomically replace it.

    The caller has closed every connection to ``path`` in this process (DuckDB then
    checkpoints and removes the WAL). Raises (leaving ``path`` as it was) if a WAL is
    still there or the copy fails.
    """
    wal = Path(f"{path}.wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise RuntimeError(f"{wal} is not empty after close: not compacting")
    remove_scratch(path)
    new = scratch(path)
    con = duckdb.connect(":memory:")
    try:
        con.execute("ATTACH ? AS src (READ_ONLY)", [str(path)])
        con.execute("ATTACH ? AS dst", [str(new)])
        con.execute("COPY FROM DATABASE src TO dst")
        con.execute(f"DELETE FROM dst._projection_meta WHERE key LIKE '{PENDING_KEY}%'")
        con.execute("DETACH src")
        con.execute("DETACH dst")
    except BaseException:
        con.close()
        remove_scratch(path)
        raise
    con.close()
    fd = os.open(new, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        wal.unlink()
    os.replace(new, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


_removed = threading.local()


def note_removed(rows: int) -> None:
    """Called by the delete helpers views use (:func:`projections.batch.delete_threads`,
    :meth:`projections.tables.Table.delete_where_in`) with the rows a DELETE removed, in
    the lane thread running the view: the projector then knows, at no cost, whether a
    deletion left bytes to erase."""
    _removed.rows = getattr(_removed, "rows", 0) + rows


def take_removed() -> int:
    """Rows noted in this thread since the last call."""
    rows: int = getattr(_removed, "rows", 0)
    _removed.rows = 0
    return rows
