"""``threadlog playground``: a web page over a deployment, with operator or user
credentials (see :mod:`threadlog.playground.app` for the routes and
:mod:`threadlog.playground.bridge` for the NATS side)."""

from threadlog.playground.app import create_app
from threadlog.playground.bridge import Bridge, Identity

__all__ = ["Bridge", "Identity", "create_app"]
