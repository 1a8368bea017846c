"""Shared output of benchmarks: a rich table, then the figures as one JSON line."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}


def report(title: str, rows: Sequence[tuple[Any, ...]], figures: dict[str, Any], *,
           name: str | None = None) -> None:
    """Print ``rows`` as a table (a third item per row adds a target column), then
    ``figures`` and the machine as one JSON line: always the last line printed."""
    with_target = any(len(r) > 2 for r in rows)
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    if with_target:
        table.add_column("target", justify="right")
    for row in rows:
        k, v = row[0], row[1]
        cells = [k, f"{v:,.1f}" if isinstance(v, float) else str(v)]
        if with_target:
            cells.append(str(row[2]) if len(row) > 2 else "")
        table.add_row(*cells)
    Console().print(table)
    print(json.dumps({"bench": name or title, **figures, "machine": machine()}))


class PeakRss:
    """Samples this process's RSS every 20 ms in a thread; ``peak_mb`` after ``stop``."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak: int = int(self._proc.memory_info().rss)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *a: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


now = time.perf_counter
