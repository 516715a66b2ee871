"""Who may read the console: the keys of the config's ``http.console`` section, a login that sets a signed
session cookie, and ``Authorization: Bearer KEY`` for scripts.

Keys are compared in constant time against every key (the time does not tell which one matched), never
logged nor echoed. The session cookie (Starlette's ``SessionMiddleware``: signed by itsdangerous, HttpOnly,
SameSite=Strict, scoped to ``/console``) holds the key's id and a fingerprint of the key: a key removed or
changed in the config ends its sessions. Sessions end ``session`` after the login (the cookie's signed
timestamp, not renewed by use). The signing secret is ``session_secret`` when set, else derived from the
keys by HMAC-SHA256 (so that it survives restarts and is shared by every process serving the console).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.config import Console

SESSION_COOKIE = "orchestrator_console"
#: Paths under ``/console`` served without a session: the login form and the style sheet.
OPEN_PATHS = ("/login", "/static/")
_DERIVATION_LABEL = b"orchestrator console session v1"


@dataclass(frozen=True)
class ConsoleKeys:
    """The console keys in force (those whose variable is set) and the session signing secret."""

    keys: tuple[tuple[str, bytes], ...]
    secret: bytes

    @classmethod
    def from_config(cls, console: Console) -> ConsoleKeys:
        keys = tuple((key.id, key.key.reveal().encode()) for key in console.keys if key.key.is_set)
        if console.session_secret is not None and console.session_secret.is_set:
            secret = console.session_secret.reveal().encode()
        else:
            material = b"\x00".join(key for _, key in sorted(keys))
            secret = hmac.new(material or b"\x00", _DERIVATION_LABEL, hashlib.sha256).digest()
        return cls(keys, secret)

    def __repr__(self) -> str:
        return f"ConsoleKeys({[key_id for key_id, _ in self.keys]!r})"

    def __bool__(self) -> bool:
        return bool(self.keys)

    def match(self, given: str | bytes) -> str | None:
        """The id of the key ``given`` is, None when it is none of them."""
        value = given.encode() if isinstance(given, str) else given
        found = None
        for key_id, key in self.keys:  # every key is compared
            if hmac.compare_digest(value, key) and found is None:
                found = key_id
        return found

    def fingerprint(self, key_id: str) -> str | None:
        """What a session of ``key_id`` carries to show it was opened with the key now in force."""
        for kid, key in self.keys:
            if kid == key_id:
                return hmac.new(self.secret, b"key:" + key, hashlib.sha256).hexdigest()[:32]
        return None

    def session_key(self, session: dict[str, object]) -> str | None:
        """The key id of a valid session, None when the session holds none (or a stale one)."""
        key_id, fingerprint = session.get("key"), session.get("fp")
        if not isinstance(key_id, str) or not isinstance(fingerprint, str):
            return None
        expected = self.fingerprint(key_id)
        if expected is None or not hmac.compare_digest(expected, fingerprint):
            return None
        return key_id

    def bearer(self, authorization: str) -> str | None:
        """The key id of an ``Authorization: Bearer KEY`` header (None for any other header)."""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return self.match(value.strip())


class RequireLogin:
    """Lets a request through when it carries a valid session or bearer key (``scope["console_key"]`` is
    then the key's id); else a request with an ``Authorization`` header is answered 401 and one without
    is sent to the login page. ``OPEN_PATHS`` pass."""

    def __init__(self, app: ASGIApp, keys: ConsoleKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        inner = path[len(root) :] if root and path.startswith(root) else path
        if inner.startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        authorization = connection.headers.get("authorization")
        if authorization is not None:
            key_id = self.keys.bearer(authorization)
            if key_id is None:
                answer = PlainTextResponse(
                    "401: not a console key\n", 401, headers={"WWW-Authenticate": 'Bearer realm="console"'}
                )
                await answer(scope, receive, send)
                return
        else:
            key_id = self.keys.session_key(connection.session)
            if key_id is None:
                target = f"{root}/login?next={quote(inner or '/', safe='/')}"
                await RedirectResponse(target, 303)(scope, receive, send)
                return
        scope["console_key"] = key_id
        await self.app(scope, receive, send)


def safe_next(value: str | None) -> str:
    """Where to go after the login: a path inside the console, else its front page."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "/"
    return value
