"""Shared output of benchmarks: a rich table, then the figures as one JSON line."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}


def report(title: str, rows: list[tuple[str, Any]], figures: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, f"{v:,.1f}" if isinstance(v, float) else str(v))
    Console().print(table)
    print(json.dumps({"bench": title, **figures, "machine": machine()}))


class PeakRss:
    """Samples this process's RSS every 20 ms in a thread; ``peak_mb`` after ``stop``."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
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

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


now = time.perf_counter
