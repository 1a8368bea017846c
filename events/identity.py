"""Who a request acts for: the user named by its subject, as the NATS server enforces it.

Subjects that act for a user carry the user as their second token: ``cmd.<user_id>.<...>``
and ``query.<user_id>.<...>``. The server's permissions (see ``threadlog.nats_auth``)
let a *user*-role connection publish only under its own name, while *app*, *operator*
and *service* connections may name any user. So the subject's user is authenticated by
the server; a payload's ``user_id`` is never trusted on its own.

Guarantees: a request whose reply subject is not an inbox (:func:`reply_allowed`) is
not served at all. :func:`bind_user` sets the body's ``user_id`` to the subject's user; a body
that names another user is refused with ``forbidden`` before anything is decided or
appended. Subjects without a user (``ops.*``: operators only) keep the body's user.
"""

from __future__ import annotations

from typing import Any

from events.errors import Forbidden

USER_SCOPED_ROOTS = frozenset({"cmd", "query"})
USER_PLACEHOLDER = "{user_id}"
"""Subject templates write the user token as ``{user_id}`` (FastStream's path syntax: the
subscriber listens on ``*``; a client fills in its user)."""


REPLY_ROOT = "_INBOX."
USER_INBOX_ROOT = "_INBOX.u."
TRUSTED_INBOX_ROOTS = ("_INBOX.a.", "_INBOX.o.", "_INBOX.s.")
"""Inboxes of the app, operator and service roles (``events.credentials``)."""


def reply_allowed(reply: str | None, subject: str | None = None) -> bool:
    """Whether the service may answer a request on ``subject`` at ``reply``.

    The requester chooses the reply subject and the service may publish anywhere, so
    answering on ``events.>`` or ``$JS.API.>`` would let any caller write the log or call
    the stream API through the service (a confused deputy), and answering on another
    user's inbox would forge replies to that user. Allowed: the inbox of the user the
    subject acts for (``_INBOX.u.<user>.``), or an app, operator or service inbox (a user
    cannot subscribe there; a forged reply would need the pending request's random token
    to be taken as its answer)."""
    if not reply or not reply.startswith(REPLY_ROOT):
        return False
    if reply.startswith(USER_INBOX_ROOT):
        user = subject_user(subject) if subject else None
        return user is not None and reply.startswith(f"{USER_INBOX_ROOT}{user}.")
    return reply.startswith(TRUSTED_INBOX_ROOTS)


def subject_user(subject: str) -> str | None:
    """The user a subject acts for (``cmd.<user>.x`` / ``query.<user>.x``), else None."""
    root, _, rest = subject.partition(".")
    if root not in USER_SCOPED_ROOTS:
        return None
    user, sep, _ = rest.partition(".")
    return user if sep and user else None


def for_user(template: str, user_id: str) -> str:
    """A subject template with its ``{user_id}`` token filled in."""
    return template.replace(USER_PLACEHOLDER, user_id)


def bind_user(body: dict[str, Any], subject: str | None) -> dict[str, Any]:
    """``body`` acting for the subject's user (see the module docstring)."""
    if subject is None:
        return body
    user = subject_user(subject)
    if user is None:
        return body
    return bind_to_user(body, user)


def bind_to_user(body: dict[str, Any], user: str) -> dict[str, Any]:
    """``body`` acting for ``user`` (taken from a subject the server enforces); a body
    naming another user is ``forbidden``."""
    claimed = body.get("user_id")
    if claimed is not None and claimed != user:
        raise Forbidden("the request names another user than the one its subject acts for",
                        details={"subject_user": user})
    body["user_id"] = user
    return body
