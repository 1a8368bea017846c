"""CLI for projections: ``threadlog projections ...`` and ``threadlog sql``. (Filled by issue 3.)"""

from __future__ import annotations

import typer

projections_app = typer.Typer(help="DuckDB read models: rebuild, status, export.")
