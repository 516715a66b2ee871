"""The links dispatch puts in messages: unsubscribe links for templates, tracked clicks and the open pixel.

``MessageLinks`` is what dispatch is given (built from the workspace config by ``message_links``):

- ``for_template(customer id, channel)`` is the ``links`` of a message's template context; with
  ``unsubscribe`` configured, ``links.unsubscribe`` is the customer's signed link for that channel (the
  same link the email's ``List-Unsubscribe`` header carries);
- ``track(html, message id)`` rewrites the HTML part of a marketing email when ``tracking`` is configured:
  every ``<a href="http(s)://...">`` becomes ``<tracking base>/c/<token>``, where the token signs the
  ledger message's id and the target URL, so the redirect goes to that URL only (no open redirect); a
  ``<img>`` of ``<tracking base>/o/<token>.gif`` is added before ``</body>``. A link with a
  ``data-no-track`` attribute, a link to the unsubscribe page or to the tracking service itself, and
  anything that is not an absolute http(s) URL is left as it is. ``tracking.clicks: false`` or
  ``opens: false`` turns either off.

The rewrite is one regular-expression pass over the HTML; only the ``<a>`` tags it finds are looked at
more closely.

Tokens are signed with a ``Keyring`` (``channels._signing``): unsubscribe links with ``unsubscribe.keys``,
tracking links with ``tracking.keys`` when given, else the unsubscribe keys, each for its own purpose so a
token made for one kind of link is refused by the others.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestrator.channels._mail import UNSUBSCRIBE_CHANNELS, UnsubscribeLinks
from orchestrator.channels._signing import Keyring

if TYPE_CHECKING:
    from orchestrator.config import ConfigFile

_CLICK = b"click"
_OPEN = b"open"
#: The longest target URL a click link is made for (longer links are left as they are).
MAX_TARGET = 2048
# An absolute http(s) URL with a host and no space or control character anywhere.
_WEB_URL = re.compile(r"https?://[^\x00-\x20\x7f/?#\\]+(?:[/?#][^\x00-\x20\x7f]*)?", re.IGNORECASE)
# An <a ...> start tag; quoted attribute values may hold ">".
_A_TAG = re.compile(r"""<a\s(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
# One attribute of a tag: its name and its value (quoted either way, or bare).
_ATTRIBUTE = re.compile(r"""([^\s"'<>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _web_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host, without spaces or control characters."""
    return len(url) <= MAX_TARGET and _WEB_URL.fullmatch(url) is not None


@lru_cache(maxsize=4096)
def _target(raw: str) -> str | None:
    """The URL an ``href`` value (quoted or bare, HTML entities and all) points to, when it is one that
    is tracked: an absolute http(s) URL. The same links recur in every message of a campaign."""
    quoted = raw[:1] in ("'", '"')
    target = htmllib.unescape(raw[1:-1] if quoted else raw).strip()
    return target if _web_url(target) else None


@dataclass(frozen=True)
class TrackingLinks:
    """Signed click and open links of one sender: ``<base_url>/c/<token>`` and ``<base_url>/o/<token>.gif``.

    A click token carries the ledger id of the message and the target URL, an open token the message id;
    ``read_click``/``read_open`` give them back for a token of any key of the ring (None otherwise)."""

    keys: Keyring
    base_url: str
    opens: bool = True
    clicks: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.keys, Keyring):
            raise TypeError("tracking links need a Keyring of signing keys")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"tracking base_url {self.base_url!r} must be an http(s) URL without a query")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def click_url(self, message_id: int, url: str) -> str:
        payload = f"{int(message_id)}:{url}".encode("utf-8", "surrogatepass")
        return f"{self.base_url}/c/{self.keys.sign(_CLICK, payload)}"

    def pixel_url(self, message_id: int) -> str:
        return f"{self.base_url}/o/{self.keys.sign(_OPEN, str(int(message_id)).encode('ascii'))}.gif"

    def read_click(self, token: str) -> tuple[int, str] | None:
        """``(message id, target URL)`` of a click token, None when it is not one of ours."""
        payload = self.keys.open(_CLICK, token)
        if payload is None:
            return None
        number, colon, url = payload.decode("utf-8", "surrogatepass").partition(":")
        if not colon or not number.isdigit() or not _web_url(url):
            return None
        return int(number), url

    def read_open(self, token: str) -> int | None:
        """The message id of an open token, None when it is not one of ours."""
        payload = self.keys.open(_OPEN, token)
        if payload is None or not payload.isdigit():
            return None
        return int(payload)

    def rewrite(self, html: str, message_id: int, untracked: tuple[str, ...] = ()) -> str:
        """``html`` with its links turned into click links and the open pixel added (see the module
        docstring); links starting with one of ``untracked`` stay as they are."""
        skip = (*untracked, self.base_url + "/")
        if self.clicks:

            def link(match: re.Match[str]) -> str:
                tag = match.group(0)
                href: re.Match[str] | None = None
                for attribute in _ATTRIBUTE.finditer(tag, 2):
                    name = attribute.group(1).lower()
                    if name == "data-no-track":
                        return tag
                    if name == "href" and href is None:
                        href = attribute
                if href is None or href.group(2) is None:
                    return tag
                target = _target(href.group(2))
                if target is None or target.startswith(skip):
                    return tag
                start, end = href.span(2)
                return f'{tag[:start]}"{self.click_url(message_id, target)}"{tag[end:]}'

            html = _A_TAG.sub(link, html)
        if self.opens:
            pixel = (
                f'<img src="{self.pixel_url(message_id)}" width="1" height="1" alt="" '
                'style="display:block;width:1px;height:1px;border:0">'
            )
            ends = list(_BODY_END.finditer(html))
            if ends:
                at = ends[-1].start()
                html = f"{html[:at]}{pixel}{html[at:]}"
            else:
                html = html + pixel
        return html


@dataclass(frozen=True)
class MessageLinks:
    """The links of one sender's messages: unsubscribe (templates, headers) and tracking (HTML rewrite)."""

    unsubscribe: UnsubscribeLinks | None = None
    tracking: TrackingLinks | None = None

    def for_template(self, customer_id: str, channel: str) -> dict[str, str]:
        """The ``links`` of a message's template context: ``unsubscribe`` for the customer and channel
        when configured (email, SMS and push; nothing for webhooks)."""
        if self.unsubscribe is None or channel not in UNSUBSCRIBE_CHANNELS:
            return {}
        return self.unsubscribe.for_template(customer_id, channel)

    @property
    def tracks(self) -> bool:
        return self.tracking is not None and (self.tracking.opens or self.tracking.clicks)

    def track(self, html: str, message_id: int) -> str:
        """The HTML part of a marketing email with tracked links and the open pixel (unchanged without
        tracking); unsubscribe links are never rewritten."""
        if self.tracking is None:
            return html
        untracked: tuple[str, ...] = ()
        if self.unsubscribe is not None and self.unsubscribe.url is not None:
            untracked = (self.unsubscribe.url + "/",)
        return self.tracking.rewrite(html, message_id, untracked)


# -- from the workspace config ----------------------------------------------------------------------------


def keyring(keys: Any) -> Keyring:
    """A ``Keyring`` from the config's list of ``{id, secret: ${ENV}}``; ``ValueError`` naming the
    environment variable of a key that is not set (never a secret's value)."""
    pairs = []
    for key in keys:
        if not key.secret.is_set:
            raise ValueError(f"signing key {key.id!r}: the environment variable {key.secret.name} is not set")
        pairs.append((key.id, key.secret.reveal()))
    return Keyring(pairs)


def unsubscribe_links(section: Any) -> UnsubscribeLinks | None:
    """The ``EmailSettings.unsubscribe`` part from the config's ``unsubscribe`` section (None without
    one): links ``<base_url>/<token>`` (and ``mailto``), signed with the first key, read with any."""
    if section is None:
        return None
    return UnsubscribeLinks(keys=keyring(section.keys), url=section.base_url, mailto=section.mailto)


def tracking_links(section: Any, unsubscribe: Any = None) -> TrackingLinks | None:
    """Click and open links from the config's ``tracking`` section (None without one), signed with its
    own ``keys`` or else those of ``unsubscribe``."""
    if section is None:
        return None
    keys = getattr(section, "keys", None) or (unsubscribe.keys if unsubscribe is not None else None)
    if not keys:
        raise ValueError("tracking links are signed: give tracking.keys or an unsubscribe section with keys")
    return TrackingLinks(keyring(keys), section.base_url, opens=section.opens, clicks=section.clicks)


def message_links(config: ConfigFile) -> MessageLinks | None:
    """What dispatch and the HTTP service need from the workspace config's ``unsubscribe`` and
    ``tracking`` sections; None when it has neither. ``ValueError`` for a key whose variable is unset."""
    unsubscribe = unsubscribe_links(config.unsubscribe)
    tracking = tracking_links(config.tracking, config.unsubscribe)
    if unsubscribe is None and tracking is None:
        return None
    return MessageLinks(unsubscribe, tracking)
