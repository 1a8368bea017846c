"""Options every CLI command that talks to NATS shares, and how they become an endpoint.

``--nats-url`` (``THREADLOG_NATS_URLS``) names the servers and ``--creds``
(``THREADLOG_NATS_CREDS``) the credentials file to present. Without ``--creds``, a
command run next to an embedded server uses that server's own service credentials from
the data dir (``<data dir>/auth/service.creds``), so local use needs no flags.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats.errors
import typer

from events import ThreadlogError, Unavailable
from events.connection import NatsEndpoint
from events.replies import Reply
from threadlog.nats_auth import NatsAuth

CredsOpt = typer.Option(None, "--creds", envvar="THREADLOG_NATS_CREDS",
                        help="NATS credentials file (threadlog credentials issue); default: "
                             "the data dir's service credentials, if any")
NatsUrl = typer.Option(..., "--nats-url", help="NATS URL(s), comma separated",
                       envvar="THREADLOG_NATS_URLS")
DataDir = typer.Option(None, "--data-dir", envvar="THREADLOG_DATA_DIR",
                       help="where the local service credentials are (without --creds)")
CONNECT_TIMEOUT = 3.0


def endpoint_for(nats_url: str | list[str], creds: Path | None,
                 data_dir: Path | None = None) -> NatsEndpoint:
    """The endpoint of ``nats_url`` as ``creds`` (or the local service credentials)."""
    if creds is None:
        local = NatsAuth(Path(data_dir or ".threadlog") / "auth").directory / "service.creds"
        creds = local if local.exists() else None
    return NatsEndpoint.of(nats_url, creds)


async def ops_request(nats_url: str, creds: Path | None, data_dir: Path | None,
                      subject: str, body: dict[str, Any], *, timeout: float = 10.0,
                      answering: str | None = None) -> Any:
    """One request to a running deployment's ``subject`` (an ops subject) and the
    result of its reply. Raises :class:`ThreadlogError`: ``unavailable`` when the server
    cannot be reached (bounded: nats-py's connect to a refused port does not return on
    its own) or no process answers (``answering`` names what should: by default the
    subject), ``timeout`` after ``timeout`` seconds, the reply's own error otherwise."""
    endpoint = endpoint_for(nats_url, creds, data_dir)
    errors: list[str] = []

    async def quiet(exc: Exception) -> None:
        errors.append(f"{type(exc).__name__}: {exc}")

    try:
        nc = await asyncio.wait_for(endpoint.connect(
            connect_timeout=CONNECT_TIMEOUT, allow_reconnect=False, max_reconnect_attempts=0,
            error_cb=quiet), CONNECT_TIMEOUT + 1)
    except Exception as exc:
        why = errors[-1] if errors else f"{type(exc).__name__}: {exc}"
        raise Unavailable(f"cannot connect to {endpoint.url} as "
                          f"{endpoint.creds or 'anonymous'}: {why}") from None
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    except nats.errors.NoRespondersError:
        raise Unavailable(f"no threadlog process is answering {answering or subject} "
                          f"on {endpoint.url}") from None
    except nats.errors.TimeoutError:
        raise ThreadlogError(f"no reply from {subject} in {timeout}s",
                             code="timeout") from None
    finally:
        await nc.close()
    return Reply.model_validate_json(msg.data).unwrap()
