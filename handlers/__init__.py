"""threadlog handlers: FastStream subscribers for command subjects, and the Client.

Depends on ``events`` only.
"""

from handlers.app import build_handlers, make_app, make_broker
from handlers.client import Client, Result
from handlers.command_log import CommandLog

__all__ = ["Client", "CommandLog", "Result", "build_handlers", "make_app", "make_broker"]
