"""``threadlog serve``: handlers + projector + scheduler in one process until cancelled."""

from __future__ import annotations

from rich.console import Console

from threadlog.app import App
from threadlog.runtime import Part, running
from threadlog.settings import Settings


def default_parts() -> list[Part]:
    """The parts ``serve`` runs beside the command handlers: projector and scheduler."""
    from threadlog.parts import serve_parts

    return serve_parts()


async def serve_forever(settings: Settings, console: Console, *, app: App | None = None
                        ) -> None:
    """Serve until cancelled; ``app``'s agents and workflows run in this process. Raises
    :class:`Unavailable` (the CLI exits non-zero) when NATS stays unreachable longer than
    ``nats_down_exit_s`` (``threadlog.watchdog``)."""
    async with running(settings, extra_parts=default_parts(), app=app) as rt:
        where = "embedded nats-server" if rt.embedded else "NATS"
        console.print(f"[green]threadlog serving[/] on {where} {', '.join(rt.urls)} "
                      f"(data dir {settings.data_dir}); Ctrl-C to stop")
        assert rt.watchdog is not None
        await rt.watchdog.failed()
