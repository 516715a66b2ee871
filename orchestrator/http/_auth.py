"""Write keys: HTTP Basic authentication with the key as the user name, as Segment's API takes it.

The keys are the workspace config's ``http.api_keys`` (each ``${NAME}`` from the environment). A key
whose variable is unset accepts nothing, so with no key set every event request is refused. Keys are
compared in constant time, and never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from orchestrator.config import ApiKey


class WriteKeys:
    """The write keys in force, by id."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = [(key.id, key.key.reveal().encode()) for key in keys if key.key.is_set]

    def __repr__(self) -> str:
        return f"WriteKeys({[key_id for key_id, _ in self._keys]!r})"

    def __bool__(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> str | None:
        """The id of the key an ``Authorization`` header carries, None when it carries none of them.
        ``Basic base64(key:)`` (the password empty, or the colon left out)."""
        if not self._keys or not authorization:
            return None
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user = decoded.partition(b":")[0]
        found = None
        for key_id, key in self._keys:  # every key is compared: the time does not tell which matched
            if hmac.compare_digest(user, key) and found is None:
                found = key_id
        return found
