"""NATS decentralized auth for threadlog: an operator, one account, four roles.

threadlog runs nats-server in JWT *operator mode*. The keys live in an auth directory
(``<data dir>/auth`` for the embedded server; a deployment keeps its own):

- an operator key, the system account and the ``THREADLOG`` account (JWTs preloaded into
  the server's memory resolver, see :meth:`NatsAuth.server_config`);
- one **scoped signing key per role** in the account JWT. A scoped key carries the role's
  permission template; a user JWT signed by it gets exactly those permissions, whatever
  the JWT itself claims. Templates use ``{{name()}}`` (the user JWT's name: the user id
  for the *user* role), so one key issues credentials for every end user.

Roles (what the server enforces; see README "Security"):

============ ====================================================================
service      threadlog's own processes: everything in the account (the log, KV,
             stream admin, ``sig.>``, every reply subject)
app          a trusted backend: publishes ``cmd.<any user>.>`` and ``query.<any user>.>``
             (it names the user per command, as Convex server functions pass userId);
             follows ``live.>``; replies only to its own inbox ``_INBOX.a.<name>.>``
user         an end user's own connection: publishes only ``cmd.<self>.>`` and
             ``query.<self>.>``, subscribes only to ``_INBOX.u.<self>.>`` and
             ``live.<self>.>``; nothing else (no ``$JS``, ``$KV``, ``events``, ``sig``)
operator     ``ops.>`` (SQL, full status, invoices, budgets), any user's queries and
             deletion (``cmd.*.thread.delete``, ``cmd.*.user.delete``)
============ ====================================================================

Guarantees: a command's user is the subject's second token, and only that user's own
connection or an app/operator/service connection can publish there; handlers never take
identity from a payload field alone. The files here are secrets: the directory is
created ``0700`` and seeds ``0600``.

Failure modes: a corrupt key file raises :class:`ValueError` naming it; issuing for a role
that does not exist raises :class:`ValueError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

from events.ids import check_token

ACCOUNT_NAME = "THREADLOG"
ROLES = ("service", "app", "user", "operator")

_U = "{{name()}}"
ROLE_PERMISSIONS: dict[str, dict[str, list[str]]] = {
    "service": {"pub": [">"], "sub": [">"]},
    "app": {"pub": ["cmd.*.>", "query.*.>"], "sub": [f"_INBOX.a.{_U}.>", "live.>"]},
    "user": {"pub": [f"cmd.{_U}.>", f"query.{_U}.>"], "sub": [f"_INBOX.u.{_U}.>", f"live.{_U}.>"]},
    "operator": {"pub": ["ops.>", "query.*.>", "cmd.*.thread.delete", "cmd.*.user.delete",
                         "cmd.*.deletion.pending"],
                 "sub": [f"_INBOX.o.{_U}.>", "live.>"]},
}
"""Each role's allow-lists (everything else is denied by the server)."""

_PREFIX = {"operator": nkeys.PREFIX_BYTE_OPERATOR, "account": nkeys.PREFIX_BYTE_ACCOUNT,
           "user": nkeys.PREFIX_BYTE_USER}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_seed(kind: str) -> str:
    """A fresh nkey seed of ``kind`` (operator, account or user)."""
    return str(nkeys.encode_seed(os.urandom(32), _PREFIX[kind]).decode())


def public_key(seed: str) -> str:
    kp = nkeys.from_seed(seed.encode())
    return str(kp.public_key.decode())


def encode_jwt(claims_nats: dict[str, Any], *, subject: str, name: str, issuer_seed: str,
               extra: dict[str, Any] | None = None) -> str:
    """A NATS v2 JWT (``alg: ed25519-nkey``) signed by ``issuer_seed``.

    The nats-jwt package on PyPI (0.2.x) has no scoped signing keys, so the few lines of
    the format are written here: header and claims as base64url JSON, ``jti`` the base32
    SHA-512/256 of the claims, signature ed25519 over ``header.claims``."""
    kp = nkeys.from_seed(issuer_seed.encode())
    claims: dict[str, Any] = {"jti": "", "iat": int(time.time()),
                              "iss": kp.public_key.decode(), "name": name, "sub": subject,
                              **(extra or {}), "nats": {**claims_nats, "version": 2}}
    digest = hashlib.new("sha512_256", json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = kp.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(sig)}"


def creds_text(jwt: str, seed: str) -> str:
    """A ``.creds`` file's text, as ``nsc`` writes it (``nats.connect(user_credentials=)``)."""
    return ("-----BEGIN NATS USER JWT-----\n" f"{jwt}\n" "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n" f"{seed}\n" "------END USER NKEY SEED------\n\n"
            "*************************************************************\n")


_UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
_ACCOUNT_LIMITS = {**_UNLIMITED, "imports": -1, "exports": -1, "wildcards": True,
                   "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1,
                   "streams": -1, "consumer": -1, "max_ack_pending": -1,
                   "mem_max_stream_bytes": -1, "disk_max_stream_bytes": -1,
                   "max_bytes_required": False}


@dataclass(frozen=True)
class NatsAuth:
    """The key material of one deployment, kept in ``directory``."""

    directory: Path

    @classmethod
    def ensure(cls, directory: str | Path) -> NatsAuth:
        """Open the auth directory, creating the operator, accounts and role keys on
        first use (idempotent; existing keys are never replaced)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        auth = cls(d)
        for name, kind in [("operator", "operator"), ("system", "account"),
                           ("account", "account"), *[(f"role-{r}", "account") for r in ROLES]]:
            path = d / f"{name}.nk"
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                tmp.write_text(new_seed(kind))
                tmp.chmod(0o600)
                tmp.replace(path)
        return auth

    def _seed(self, name: str) -> str:
        path = self.directory / f"{name}.nk"
        try:
            seed = path.read_text().strip()
            nkeys.from_seed(seed.encode())
        except Exception as exc:
            raise ValueError(f"bad or missing key file {path}: {exc}") from None
        return seed

    @property
    def account_public_key(self) -> str:
        return public_key(self._seed("account"))

    def _jwts(self) -> tuple[str, str, str]:
        operator, system, account = self._seed("operator"), self._seed("system"), \
            self._seed("account")
        sys_pub, acc_pub = public_key(system), public_key(account)
        op_jwt = encode_jwt({"type": "operator", "system_account": sys_pub},
                            subject=public_key(operator), name="threadlog-operator",
                            issuer_seed=operator)
        sys_jwt = encode_jwt({"type": "account", "limits": {**_UNLIMITED, "conn": -1}},
                             subject=sys_pub, name="SYS", issuer_seed=operator)
        scopes = [{"kind": "user_scope", "key": public_key(self._seed(f"role-{r}")),
                   "role": r, "template": {"pub": {"allow": p["pub"]},
                                           "sub": {"allow": p["sub"]}, **_UNLIMITED}}
                  for r, p in ROLE_PERMISSIONS.items()]
        acc_jwt = encode_jwt({"type": "account", "limits": _ACCOUNT_LIMITS,
                              "signing_keys": scopes,
                              "default_permissions": {"pub": {}, "sub": {}}},
                             subject=acc_pub, name=ACCOUNT_NAME, issuer_seed=operator)
        return op_jwt, sys_jwt, acc_jwt

    def server_config(self) -> str:
        """The auth part of a nats-server config: operator mode, memory resolver with the
        system and THREADLOG accounts preloaded. Anonymous connections are refused."""
        op_jwt, sys_jwt, acc_jwt = self._jwts()
        sys_pub = public_key(self._seed("system"))
        return (f"operator: {op_jwt}\n"
                f"system_account: {sys_pub}\n"
                "resolver: MEMORY\n"
                "resolver_preload: {\n"
                f"  {sys_pub}: {sys_jwt}\n"
                f"  {self.account_public_key}: {acc_jwt}\n"
                "}\n")

    def write_server_config(self, out: str | Path) -> Path:
        """Write :meth:`server_config` to ``out`` for a nats-server config to ``include``
        (a deployment's nodes; see ``deploy/nats``). It holds JWTs and public keys only,
        no seed: mode 0644, so a server running as another user can read it."""
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.server_config())
        tmp.chmod(0o644)
        tmp.replace(path)
        return path

    def issue(self, role: str, name: str) -> str:
        """The ``.creds`` text of a new credential for ``role`` named ``name`` (for the
        *user* role, the user id its connection acts as)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        check_token(name, what="credential name")
        user_seed = new_seed("user")
        # A user of a scoped signing key carries no permissions or limits of its own
        # (the server refuses it otherwise): the key's template is all it gets.
        jwt = encode_jwt({"type": "user", "issuer_account": self.account_public_key,
                          "tags": [f"role:{role}"]},
                         subject=public_key(user_seed), name=name,
                         issuer_seed=self._seed(f"role-{role}"))
        return creds_text(jwt, user_seed)

    def write_creds(self, role: str, name: str, out: str | Path) -> Path:
        """Issue a credential and write it to ``out`` (mode 0600)."""
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.issue(role, name))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    def service_creds(self) -> Path:
        """This deployment's own service credential (created once, reused)."""
        path = self.directory / "service.creds"
        if not path.exists():
            self.write_creds("service", "threadlog", path)
        return path
