"""``python -m projections --nats-url URL [--creds FILE] --db FILE [--stream EVENTS]``: a
projector process.

Runs the projector and the query subjects until SIGTERM/SIGINT (clean stop). Prints
``projector ready`` once the query subjects are subscribed. Used by the
crash tests (which SIGKILL it) and handy for running the projector on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from events.connection import NatsEndpoint
from projections.projector import ProjectorConfig
from projections.queries import SqlLimits
from projections.service import run_projection_service


async def _main(args: argparse.Namespace) -> None:
    endpoint = NatsEndpoint.of(args.nats_url, args.creds)
    nc = await endpoint.connect()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_projection_service(
            nc, endpoint,
            ProjectorConfig(db_path=Path(args.db), stream=args.stream,
                            batch_max=args.batch_max,
                            catchup_batch_max=args.catchup_batch_max,
                            min_seq_timeout_s=args.min_seq_timeout),
            sql_limits=SqlLimits(), query_prefix=args.query_prefix, stop=stop,
            ready=lambda: print("projector ready", flush=True))
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m projections", description=__doc__)
    p.add_argument("--nats-url", required=True)
    p.add_argument("--creds", default=None, help="NATS credentials file (service role)")
    p.add_argument("--db", required=True, help="DuckDB file")
    p.add_argument("--stream", default="EVENTS")
    p.add_argument("--batch-max", type=int, default=1000)
    p.add_argument("--catchup-batch-max", type=int, default=30_000)
    p.add_argument("--query-prefix", default="query")
    p.add_argument("--min-seq-timeout", type=float, default=5.0,
                   help="longest wait of a query for its min_seq (seconds)")
    asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    main()
