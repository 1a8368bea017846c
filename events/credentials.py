"""NATS user credentials (``.creds`` files): reading them, and who they say the holder is.

A ``.creds`` file holds a user JWT (signed by an account key) and the user's nkey seed.
The NATS server verifies the JWT's signature chain and the connection's signature of the
server's nonce; the permissions inside the JWT (or the scoped signing key's template that
issued it) are then enforced by the server on every publish and subscribe. Nothing here
is a security check of ours: it only reads what the file says, for choosing the inbox
prefix a role is allowed to subscribe to, and signs nonces for the projector's own
protocol connection (``projections.feed``).

Failure modes: a missing or malformed file raises :class:`Unavailable` naming the path.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from events.errors import Unavailable

_JWT = re.compile(r"-----BEGIN NATS USER JWT-----\s*(\S+)\s*------END NATS USER JWT------")
_SEED = re.compile(r"-----BEGIN USER NKEY SEED-----\s*(\S+)\s*------END USER NKEY SEED------")

INBOX_ROOT = "_INBOX"
ROLE_INBOX_LETTER = {"user": "u", "app": "a", "operator": "o", "service": "s"}
"""Each role's inboxes live under ``_INBOX.<letter>.<name>``: the server lets a user-role
connection subscribe to ``_INBOX.u.<its own name>.>`` only, so no one reads another's
replies."""


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass(frozen=True)
class Credentials:
    """The contents of a ``.creds`` file."""

    jwt: str
    seed: str
    path: Path | None = None

    @classmethod
    def read(cls, path: str | Path) -> Credentials:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise Unavailable(f"cannot read the NATS credentials file {p}: {exc.strerror}",
                              details={"path": str(p)}) from None
        jwt, seed = _JWT.search(text), _SEED.search(text)
        if jwt is None or seed is None:
            raise Unavailable(f"{p} is not a NATS credentials file (no user JWT and seed)",
                              details={"path": str(p)})
        return cls(jwt.group(1), seed.group(1), p)

    @property
    def claims(self) -> dict[str, Any]:
        """The JWT's claims, unverified (the server verifies them)."""
        try:
            claims: dict[str, Any] = json.loads(_b64url_decode(self.jwt.split(".")[1]))
        except (IndexError, ValueError) as exc:
            raise Unavailable(f"malformed user JWT in {self.path}: {exc}") from None
        return claims

    @property
    def name(self) -> str:
        """The user name in the JWT (for the *user* role: the user id)."""
        return str(self.claims.get("name", ""))

    @property
    def role(self) -> str:
        """The ``role:<r>`` tag threadlog puts in the JWTs it issues ("" if none)."""
        for tag in self.claims.get("nats", {}).get("tags", []) or []:
            if isinstance(tag, str) and tag.startswith("role:"):
                return tag[5:]
        return ""

    @property
    def inbox_prefix(self) -> str:
        """The inbox prefix this role may subscribe to (``_INBOX`` for unknown roles)."""
        letter = ROLE_INBOX_LETTER.get(self.role)
        if letter is None or not self.name:
            return INBOX_ROOT
        return f"{INBOX_ROOT}.{letter}.{self.name}"

    def sign_nonce(self, nonce: str) -> str:
        """The base64url signature of the server's ``nonce`` with the user's seed."""
        import nkeys  # the nkeys package ships with nats-py's nkeys extra

        kp = nkeys.from_seed(self.seed.encode())
        try:
            sig = kp.sign(nonce.encode())
        finally:
            kp.wipe()
        return base64.urlsafe_b64encode(sig).decode().rstrip("=")
