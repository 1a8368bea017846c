"""``threadlog credentials issue``: write a NATS credentials file for a role.

The keys are the deployment's (``<data dir>/auth``, created by the embedded server on
first start, or by this command); a deployment with its own NATS operator issues with
``nsc`` instead. The file is a secret (mode 0600): whoever holds it acts as that role.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from events import ThreadlogError
from threadlog.nats_auth import ROLES, NatsAuth

credentials_app = typer.Typer(help="NATS credentials for the service, app, user and "
                                   "operator roles.")
err = Console(stderr=True)


@credentials_app.command("issue")
def issue_command(
        role: str = typer.Option(..., "--role", help="user | app | operator | service"),
        user: str | None = typer.Option(None, "--user", help="the user id (role user), or "
                                        "a name for the app/operator credential"),
        data_dir: Path = typer.Option(Path(".threadlog"), "--data-dir",
                                      envvar="THREADLOG_DATA_DIR"),
        out: Path = typer.Option(..., "--out", help="where to write the .creds file")) -> None:
    """Write a credentials file that ``nats.connect(user_credentials=FILE)`` accepts."""
    if role not in ROLES:
        err.print(f"[red]error:[/] unknown role {role!r}: use one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    if role == "user" and not user:
        err.print("[red]error:[/] --role user needs --user USER_ID (the user it acts as)")
        raise typer.Exit(2)
    try:
        path = NatsAuth.ensure(data_dir / "auth").write_creds(role, user or role, out)
    except (ThreadlogError, ValueError, OSError) as exc:
        message = exc.message if isinstance(exc, ThreadlogError) else str(exc)
        err.print(f"[red]error:[/] {message}")
        raise typer.Exit(2) from None
    err.print(f"wrote {path} ({role}{f' {user}' if user else ''})")
