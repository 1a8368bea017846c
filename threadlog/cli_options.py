"""Options every CLI command that talks to NATS shares, and how they become an endpoint.

``--nats-url`` (``THREADLOG_NATS_URLS``) names the servers and ``--creds``
(``THREADLOG_NATS_CREDS``) the credentials file to present. Without ``--creds``, a
command run next to an embedded server uses that server's own service credentials from
the data dir (``<data dir>/auth/service.creds``), so local use needs no flags.
"""

from __future__ import annotations

from pathlib import Path

import typer

from events.connection import NatsEndpoint
from threadlog.nats_auth import NatsAuth

CredsOpt = typer.Option(None, "--creds", envvar="THREADLOG_NATS_CREDS",
                        help="NATS credentials file (threadlog credentials issue); default: "
                             "the data dir's service credentials, if any")


def endpoint_for(nats_url: str | list[str], creds: Path | None,
                 data_dir: Path | None = None) -> NatsEndpoint:
    """The endpoint of ``nats_url`` as ``creds`` (or the local service credentials)."""
    if creds is None:
        local = NatsAuth(Path(data_dir or ".threadlog") / "auth").directory / "service.creds"
        creds = local if local.exists() else None
    return NatsEndpoint.of(nats_url, creds)
