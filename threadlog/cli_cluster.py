"""``threadlog cluster``: what a clustered deployment (``docker-compose.yml``,
``deploy/nats``) runs besides nats-server.

- ``threadlog cluster auth-config --data-dir DIR --out NATS_DIR``: creates the
  deployment's keys in ``DIR/auth`` on first run (operator, accounts, role signing keys,
  see ``threadlog.nats_auth``; existing keys are kept), writes the service credentials
  ``DIR/auth/service.creds`` and ``NATS_DIR/auth.conf``, the operator-mode part every
  node's config includes (JWTs and public keys only, no seed). Idempotent: the compose
  file runs it as an init service before the nodes start.
- ``threadlog cluster handlers``: the command handlers and workflows only, no projector
  (scale these out; one ``threadlog serve`` process runs the projector, the invoice
  scheduler and the live relay, which DuckDB's one-writer file limits to one process).

Failure modes: bad settings or an unreadable key file print one line and exit non-zero
(``threadlog.cli_errors``); ``handlers`` exits non-zero when NATS stays unreachable
longer than ``THREADLOG_NATS_DOWN_EXIT_S`` so a supervisor restarts it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from events import ThreadlogError
from threadlog.app import App
from threadlog.cli_signals import until_signalled
from threadlog.nats_auth import NatsAuth
from threadlog.settings import Settings, load_settings

cluster_app = typer.Typer(help="A clustered deployment: the NATS nodes' auth config and "
                               "the handlers-only process.")
err = Console(stderr=True)


def write_auth_config(data_dir: Path, out: Path) -> tuple[Path, Path]:
    """Keys in ``data_dir/auth`` (created once), the service credentials beside them and
    ``out/auth.conf`` for the nodes; returns (auth.conf, service.creds)."""
    try:
        auth = NatsAuth.ensure(data_dir / "auth")
        return auth.write_server_config(out / "auth.conf"), auth.service_creds()
    except (ValueError, OSError) as exc:
        raise ThreadlogError(f"cannot write the NATS auth config: {exc}",
                             code="invalid_input") from None


@cluster_app.command("auth-config")
def auth_config_command(
        data_dir: Path = typer.Option(Path(".threadlog"), "--data-dir",
                                      envvar="THREADLOG_DATA_DIR",
                                      help="keys and service credentials go to <this>/auth"),
        out: Path = typer.Option(..., "--out", help="directory of the nodes' auth.conf")
) -> None:
    """Write auth.conf for the NATS nodes and the service credentials (idempotent)."""
    conf, creds = write_auth_config(data_dir, out)
    err.print(f"wrote {conf} (include it from every node's config) and {creds}")


async def serve_handlers(settings: Settings, console: Console, *, app: App | None = None
                         ) -> None:
    """Run the command handlers and workflows (no projector) until cancelled; raises
    :class:`~events.errors.Unavailable` when NATS stays unreachable past the bound."""
    from threadlog.parts import workflows_part
    from threadlog.runtime import running

    async with running(settings, extra_parts=[workflows_part], app=app) as rt:
        console.print(f"[green]threadlog handlers serving[/] on NATS {', '.join(rt.urls)} "
                      f"(replicas {settings.replicas}); Ctrl-C to stop")
        assert rt.watchdog is not None
        await rt.watchdog.failed()


@cluster_app.command("handlers")
def handlers_command(
        app_spec: str | None = typer.Option(None, "--app", envvar="THREADLOG_APP",
                                            help="your threadlog.App: 'package.module:app'")
) -> None:
    """Run the command handlers (and workflows) against THREADLOG_NATS_URLS until
    SIGTERM; no projector. Needs THREADLOG_NATS_URLS and THREADLOG_NATS_CREDS."""
    from threadlog.app_loader import load_app

    settings = load_settings()
    if not settings.nats_urls:
        raise ThreadlogError("set THREADLOG_NATS_URLS: the handlers process runs no "
                             "embedded server", code="invalid_input")
    app_obj = load_app(app_spec) if app_spec else None
    asyncio.run(until_signalled(serve_handlers(settings, err, app=app_obj), err))


