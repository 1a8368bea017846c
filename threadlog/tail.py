"""``threadlog events tail``: follow the log live and print each event on one line."""

from __future__ import annotations

import json

from rich.console import Console

from events import Aggregate, EventStore, EventStreamSpec
from events.connection import NatsEndpoint


async def tail(endpoint: NatsEndpoint, stream: str, thread: str | None,
               from_seq: int | None, console: Console) -> None:
    await endpoint.probe(timeout=3)  # Unavailable, one line, when unreachable or refused
    nc = await endpoint.connect()
    try:
        store = EventStore(nc, EventStreamSpec(name=stream))
        start = from_seq if from_seq is not None else await store.last_seq() + 1
        agg = Aggregate.thread(thread) if thread else None
        async for ev in store.watch(agg, start):
            env = ev.envelope
            data = json.dumps(env.data, ensure_ascii=False)
            if len(data) > 160:
                data = data[:157] + "..."
            console.print(f"[dim]{ev.seq:>8}[/] [cyan]{env.occurred_at:%H:%M:%S}[/] "
                          f"[bold]{env.type:<24}[/] {env.aggregate_type}:{env.aggregate_id} "
                          f"[dim]{data}[/]", highlight=False)
    finally:
        await nc.close()
