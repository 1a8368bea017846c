"""``threadlog bench NAME [ARGS...]``: runs ``bench/NAME.py``'s ``main(argv)``.

Each benchmark module prints a table and, as its last line, one JSON object of figures.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import bench


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                  if not m.name.startswith("_"))


BENCH_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def bench_command(ctx: typer.Context,
                  name: str = typer.Argument(None, help="benchmark name (omit to list)")) -> None:
    """Run a benchmark from bench/: prints a table, then one JSON line of figures."""
    if not name or name in ("--help", "-h"):
        typer.echo("usage: threadlog bench NAME [ARGS]  (threadlog bench NAME --help for "
                   "its arguments)")
        typer.echo("benchmarks: " + ", ".join(available()))
        return
    if name not in available():
        typer.echo(f"unknown benchmark {name!r}; have: {', '.join(available())}", err=True)
        raise typer.Exit(2)
    module = importlib.import_module(f"bench.{name}")
    module.main(list(ctx.args))
