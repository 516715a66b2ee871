"""Signed tokens for the links a message carries (unsubscribe, click, open), with key ids for rotation.

A token is ``<payload>.<key id>.<mac>``: the payload (what the link is about) and the MAC are URL-safe
base64 without padding, the key id is the configured key's name (``[A-Za-z0-9][A-Za-z0-9_.-]*``), so the
whole token is URL-safe and needs no escaping. The MAC is HMAC-SHA256, cut to 128 bits, over the token's
purpose (``unsubscribe``, ``click``, ``open``: a token made for one use is refused for another), the key id
and the payload, under the key the id names.

A ``Keyring`` holds the configured keys in order: the first signs, every one verifies. Rotating a key is:
add the new key first (new links are signed with it, links already sent still verify with the old one),
then, once the old links may go unanswered, remove the old key (its links are refused from then on). A
token whose key id is not in the ring, whose MAC does not match (compared in constant time) or that is
malformed opens to None; nothing says which of these it was.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Iterable

#: How long a key id may be and what it may hold (the workspace config's names).
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: The shortest secret accepted, in characters.
MIN_SECRET = 16
#: Bytes of the HMAC kept in a token (128 bits: 22 characters).
MAC_BYTES = 16
#: The longest token opened; a click token carries its target URL (at most 2048 characters).
MAX_TOKEN = 4096
_B64 = re.compile(r"[A-Za-z0-9_-]*")


def b64encode(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes | None:
    """The bytes of unpadded URL-safe base64 text, None when it is not such text."""
    if _B64.fullmatch(text) is None or len(text) % 4 == 1:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


class Keyring:
    """Signing keys by id, in order: the first signs, all verify. The secrets are never shown."""

    __slots__ = ("_keys", "_signing")

    def __init__(self, keys: Iterable[tuple[str, str | bytes]]) -> None:
        table: dict[str, bytes] = {}
        for key_id, secret in keys:
            if not isinstance(key_id, str) or KEY_ID.fullmatch(key_id) is None:
                raise ValueError(f"signing key id {key_id!r} must match {KEY_ID.pattern}")
            if key_id in table:
                raise ValueError(f"signing key id {key_id!r} is used twice")
            raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
            if len(raw) < MIN_SECRET:
                # Never the secret itself: only its key id.
                raise ValueError(
                    f"the secret of signing key {key_id!r} must be at least {MIN_SECRET} characters"
                )
            table[key_id] = raw
        if not table:
            raise ValueError("a keyring needs at least one signing key")
        self._keys = table
        self._signing = next(iter(table))

    @classmethod
    def single(cls, secret: str | bytes, key_id: str = "k1") -> Keyring:
        """A ring of one key."""
        return cls([(key_id, secret)])

    @property
    def signing_id(self) -> str:
        """The id of the key that signs."""
        return self._signing

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self._keys)!r}, signing={self._signing!r})"

    def _mac(self, secret: bytes, purpose: bytes, key_id: str, payload: bytes) -> bytes:
        message = b"%s\x00%s\x00%s" % (purpose, key_id.encode("ascii"), payload)
        return hmac.digest(secret, message, "sha256")[:MAC_BYTES]

    def sign(self, purpose: bytes, payload: bytes) -> str:
        """The token carrying ``payload`` for ``purpose``, signed with the first key."""
        key_id = self._signing
        mac = self._mac(self._keys[key_id], purpose, key_id, payload)
        return f"{b64encode(payload)}.{key_id}.{b64encode(mac)}"

    def open(self, purpose: bytes, token: str) -> bytes | None:
        """The payload of a token this ring signed for ``purpose``, None for anything else."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or not token.isascii():
            return None
        encoded, dot, rest = token.partition(".")
        key_id, dot2, mac_text = rest.rpartition(".")
        if not dot or not dot2:
            return None
        secret = self._keys.get(key_id)
        payload = b64decode(encoded)
        mac = b64decode(mac_text)
        if secret is None or payload is None or mac is None:
            return None
        if not hmac.compare_digest(self._mac(secret, purpose, key_id, payload), mac):
            return None
        return payload
