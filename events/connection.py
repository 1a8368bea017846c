"""Where and as whom to connect to NATS: servers plus a credentials file.

Every threadlog connection (handlers, projector feed, scheduler, CLI, the ``Client``)
is made from a :class:`NatsEndpoint`, so credentials are never forgotten on one path.
With ``creds``, the connection authenticates with that user JWT and seed and uses the
inbox prefix its role may subscribe to (``events.credentials``): a user-role connection
without it could not receive its own replies.

Failure modes: an unreadable credentials file raises :class:`Unavailable`; a refused
credential surfaces as nats-py's authorization error from :meth:`NatsEndpoint.connect`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from events.credentials import Credentials
from events.errors import Unavailable


@dataclass(frozen=True)
class NatsEndpoint:
    """NATS server URLs and the ``.creds`` file to present (None: no credentials)."""

    servers: tuple[str, ...]
    creds: Path | None = None

    @classmethod
    def of(cls, servers: str | list[str] | tuple[str, ...],
           creds: str | Path | None = None) -> NatsEndpoint:
        urls = [u.strip() for u in servers.split(",")] if isinstance(servers, str) \
            else list(servers)
        return cls(tuple(u for u in urls if u), Path(creds) if creds else None)

    @property
    def url(self) -> str:
        """The first server URL."""
        return self.servers[0]

    @property
    def credentials(self) -> Credentials | None:
        return Credentials.read(self.creds) if self.creds else None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` / FastStream's ``NatsBroker``."""
        creds = self.credentials
        if creds is None:
            return {}
        return {"user_credentials": str(self.creds), "inbox_prefix": creds.inbox_prefix}

    async def probe(self, timeout: float = 5.0) -> None:
        """Connect once without retrying and close: a refused credential or an unreachable
        server raises :class:`Unavailable` at once (nats-py's own connect would keep
        retrying for as long as ``max_reconnect_attempts`` allows)."""
        try:
            # nats-py can keep trying a refused port despite allow_reconnect=False: bound it
            nc = await asyncio.wait_for(self.connect(connect_timeout=timeout,
                                                     allow_reconnect=False,
                                                     max_reconnect_attempts=0,
                                                     error_cb=_quiet), timeout + 1)
        except Exception as exc:
            hint = " (check the credentials file)" if "authoriz" in str(exc).lower() else ""
            why = str(exc) or f"no answer in {timeout + 1:.0f} s"
            raise Unavailable(f"cannot connect to {', '.join(self.servers)} as "
                              f"{self.creds or 'anonymous'}: {why}{hint}",
                              details={"servers": list(self.servers)}) from None
        await nc.close()

    async def connect(self, **kwargs: Any) -> NATS:
        """A nats-py connection to these servers as this credential."""
        import nats

        return await nats.connect(servers=list(self.servers), **self.options(), **kwargs)


async def _quiet(exc: Exception) -> None:
    """An error callback that leaves reporting to the caller (nats-py's default prints
    a traceback per failed attempt)."""
