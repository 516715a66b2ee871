"""Email composition: from a rendered message to the exact bytes a mail server receives.

``compose_email`` builds a MIME message by hand rather than through ``email.message.EmailMessage``: the
stdlib's object model costs about 2 ms a message, more than rendering it, and what is needed is small
and fixed:

- headers: From, To, Reply-To, Subject, Date, a Message-ID derived from the idempotency key (the same key
  always gives the same Message-ID, which is what lets a receiving system drop a resent duplicate),
  ``List-Unsubscribe`` (https and/or mailto) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
  (RFC 8058, only with an https link; not on transactional messages), ``X-Idempotency-Key``; non-ASCII
  text is RFC 2047 encoded, long lines folded;
- a body: ``text/plain`` alone, or ``multipart/alternative`` with the text part first and the HTML part
  last (clients show the last part they understand); each part is 7bit when it is plain ASCII with short
  lines, else quoted-printable (text) or base64 (HTML), so the message needs no 8BITMIME or SMTPUTF8;
- CSS inlined into the HTML part with ``css-inline`` when it has a ``<style>`` block (many mail clients
  drop ``<style>``); remote stylesheets are never fetched. The inliner runs once per layout (the page
  without its plain texts), not once per message, with the same result (``inline_css``).

The output is deterministic (the MIME boundary comes from the idempotency key too), so a resend is
byte-for-byte the same message.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from urllib.parse import quote, urlsplit

import css_inline

from orchestrator.channels._base import OutgoingMessage
from orchestrator.channels._signing import Keyring
from orchestrator.clock import from_us
from orchestrator.errors import DeliveryError
from orchestrator.language import CONSENT_CHANNELS

# RFC 5322: a line must not exceed 998 characters and should not exceed 78.
MAX_LINE = 998
FOLD_AT = 78
_ATEXT_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_DOMAIN_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_STYLE_TAG = re.compile(r"<style[\s>]", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The bytes a 7bit part may hold: tab, line feed and printable ASCII (deleted by bytes.translate, which
# leaves nothing of a part that holds only those, many times faster than a regular expression).
_SEVEN_BIT = b"\t\n" + bytes(range(0x20, 0x7F))


def _has_long_line(text: str) -> bool:
    """Whether a line of ``text`` (split at ``\n``) is longer than ``MAX_LINE``. (A regular expression
    for it tries every starting position: hundreds of microseconds for a page of HTML.)"""
    return len(text) > MAX_LINE and max(map(len, text.split("\n"))) > MAX_LINE


# Remote stylesheets are not fetched (a template must not make the sender call out at send time); @media
# rules cannot be inlined and are kept in a <style> block for the clients that honour them.
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True, keep_link_tags=False)


class ComposeError(DeliveryError, ValueError):
    """The message cannot become an email. ``suppress``: the recipient address itself is at fault."""

    def __init__(self, message: str, *, code: str, suppress: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.suppress = suppress


# -- addresses ----------------------------------------------------------------------------------------


def check_address(address: str) -> str:
    """``address`` as a plain ASCII ``local@domain`` (an internationalised domain in its xn-- form).

    Refuses (``ComposeError``, ``suppress=True``) what no mail server would take: display names, quoted
    local parts, non-ASCII local parts (they need SMTPUTF8), dots at the ends, domains without a dot.
    """
    text = address.strip()
    local, at, domain = text.rpartition("@")
    problem = None
    if not at or not local or not domain:
        problem = "has no local part and domain"
    elif len(text) > 254:
        problem = "is longer than 254 characters"
    elif not _ATEXT_LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        problem = "has a local part a mail server would refuse"
    else:
        try:
            ascii_domain = domain.rstrip(".").encode("idna").decode("ascii")
        except UnicodeError:
            ascii_domain = ""
        labels = ascii_domain.split(".")
        if len(labels) < 2 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
            problem = "has an invalid domain"
        else:
            return f"{local}@{ascii_domain}"
    raise ComposeError(f"email address {address!r} {problem}", code="invalid_address", suppress=True)


def _mailbox(value: str, what: str) -> tuple[str, str]:
    """(header value, bare address) for a configured mailbox such as ``"The Shop <news@shop.example>"``."""
    if _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} contains a control character")
    name, address = parseaddr(value)
    if not address:
        raise ValueError(f"{what} {value!r} is not an email address")
    try:
        bare = check_address(address)
    except ComposeError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return formataddr((name, bare), charset="utf-8"), bare


# -- unsubscribe links --------------------------------------------------------------------------------


#: The channels a customer can unsubscribe from (each has a ``consent_<channel>``).
UNSUBSCRIBE_CHANNELS = CONSENT_CHANNELS
_UNSUBSCRIBE = b"unsubscribe"


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Per-customer unsubscribe links, signed so that one customer's link cannot unsubscribe another.

    ``url`` is the https address the unsubscribe page answers at (the HTTP service's ``/u/``, behind the
    public name, e.g. ``https://shop.example/u``); a customer's link is ``<url>/<token>``, a page that
    also takes the one-click POST of RFC 8058. ``mailto`` is an address whose mailbox is read by an
    unsubscribe handler; its link carries the same token in the subject. The token (``signing``) carries
    the channel and the customer id, signed with the keyring's first key; ``read`` accepts a token of any
    key of the ring. The same object must serve the templates (``for_template``) and the headers, so the
    two links agree.
    """

    keys: Keyring
    url: str | None = None
    mailto: str | None = None
    _mailto_address: str | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.keys, Keyring):
            raise TypeError("unsubscribe links need a Keyring of signing keys")
        if self.url is None and self.mailto is None:
            raise ValueError("unsubscribe links need a url, a mailto address or both")
        if self.url is not None:
            parts = urlsplit(self.url)
            if (
                parts.scheme != "https"
                or not parts.hostname
                or parts.query
                or parts.fragment
                or _CONTROL.search(self.url)
                or " " in self.url
            ):
                raise ValueError(
                    f"unsubscribe url {self.url!r} must be an https URL without a query or fragment"
                )
            object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.mailto is not None:
            object.__setattr__(self, "_mailto_address", _mailbox(self.mailto, "unsubscribe mailto")[1])

    def token(self, customer_id: str, channel: str = "email") -> str:
        """The signed token naming (channel, customer)."""
        if channel not in UNSUBSCRIBE_CHANNELS:
            raise ValueError(f"no unsubscribe for channel {channel!r}")
        payload = f"{channel}:{customer_id}".encode("utf-8", "surrogatepass")
        return self.keys.sign(_UNSUBSCRIBE, payload)

    def read(self, token: str) -> tuple[str, str] | None:
        """``(customer id, channel)`` of a token signed by any key of the ring, None for any other text."""
        payload = self.keys.open(_UNSUBSCRIBE, token)
        if payload is None:
            return None
        channel, colon, customer = payload.decode("utf-8", "surrogatepass").partition(":")
        if not colon or not customer or channel not in UNSUBSCRIBE_CHANNELS:
            return None
        return customer, channel

    def verify(self, customer_id: str, channel: str, token: str) -> bool:
        """Whether ``token`` is this sender's token for (customer, channel); the MAC is compared in
        constant time."""
        return self.read(token) == (customer_id, channel)

    def https_url(self, customer_id: str, channel: str = "email", *, token: str | None = None) -> str | None:
        if self.url is None:
            return None
        return f"{self.url}/{token or self.token(customer_id, channel)}"  # the token is URL-safe

    def mailto_url(self, customer_id: str, channel: str = "email", *, token: str | None = None) -> str | None:
        if self._mailto_address is None:
            return None
        token = token or self.token(customer_id, channel)
        return f"mailto:{self._mailto_address}?subject={quote(f'unsubscribe {token}', safe='')}"

    def link(self, customer_id: str, channel: str = "email") -> str | None:
        """The link a message shows: the https page, else (email only) the mailto."""
        if self.url is not None:
            return self.https_url(customer_id, channel)
        return self.mailto_url(customer_id, channel) if channel == "email" else None

    def for_template(self, customer_id: str, channel: str = "email") -> dict[str, str]:
        """Plain data for the template context (``links.unsubscribe``): the https link, else the mailto."""
        link = self.link(customer_id, channel)
        return {} if link is None else {"unsubscribe": link}

    def headers(self, customer_id: str) -> list[tuple[str, str]]:
        """``List-Unsubscribe`` and, when there is an https link, ``List-Unsubscribe-Post``."""
        token = self.token(customer_id)
        https, mailto = self.https_url(customer_id, token=token), self.mailto_url(customer_id, token=token)
        value = ", ".join(f"<{link}>" for link in (https, mailto) if link)
        result = [("List-Unsubscribe", value)]
        if https:
            result.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        return result


# -- settings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailSettings:
    """What every email of one sender shares. Mailboxes are checked here, once, not at every send.

    ``envelope_from`` is the SMTP ``MAIL FROM`` (where bounces go); by default the sender's address.
    ``message_id_domain`` should be a domain the sender owns.
    """

    sender: str
    reply_to: str | None = None
    envelope_from: str | None = None
    message_id_domain: str = "orchestrator.invalid"
    unsubscribe: UnsubscribeLinks | None = None
    inline_css: bool = True
    _from_header: str = field(init=False, repr=False, compare=False)
    _reply_to_header: str | None = field(init=False, repr=False, compare=False)
    _envelope: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from_header, sender_address = _mailbox(self.sender, "sender")
        reply_to = _mailbox(self.reply_to, "reply_to")[0] if self.reply_to else None
        envelope = _mailbox(self.envelope_from, "envelope_from")[1] if self.envelope_from else sender_address
        labels = self.message_id_domain.split(".")
        if not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
            raise ValueError(f"message_id_domain {self.message_id_domain!r} is not a domain name")
        object.__setattr__(self, "_from_header", from_header)
        object.__setattr__(self, "_reply_to_header", reply_to)
        object.__setattr__(self, "_envelope", envelope)


@dataclass(frozen=True)
class ComposedEmail:
    """The bytes to send and the SMTP envelope."""

    data: bytes
    envelope_from: str
    recipient: str
    message_id: str


def message_id(idempotency_key: str, domain: str) -> str:
    """The Message-ID of the email with this idempotency key (stable across resends)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<{digest[:32]}@{domain}>"


def inline_css(html: str) -> str:
    """``html`` with its ``<style>`` rules moved into ``style`` attributes; unchanged without a ``<style>``.

    The same as running the inliner on ``html``, but the inliner runs once per page layout rather than once
    per message (see ``_inline_cached``). Raises ``ComposeError`` when the inliner refuses the document.
    """
    if not _STYLE_TAG.search(html):
        return html
    cached = _inline_cached(html)
    if cached is not None:
        return cached
    return _inline(html)


def _inline(html: str) -> str:
    try:
        return _INLINER.inline(html)
    except (css_inline.InlineError, ValueError) as exc:
        raise ComposeError(f"cannot inline the CSS of the HTML part: {exc}", code="invalid_html") from exc


# -- inlining once per layout -------------------------------------------------------------------------
#
# The messages of one template differ in their text (a name, a price), not in their tags and styles, and
# CSS rules match tags and attributes, never text (but for ``:empty``, which no text that is not empty
# changes). So the page is cut into its tags and the text between them; each text run that is plain (see
# ``_plain``) is replaced by a numbered marker, and the page of markers (the layout: everything but
# those texts) is inlined once and kept. A message whose layout is known gets the kept result with its own
# texts put back where the markers came out, escaped as the inliner's serializer escapes text.
#
# Why that is the same as inlining the message: a marker starts with a character that is not white space,
# like the text it stands for, and neither holds a character the HTML tokenizer acts on in text ("<",
# "&" but for the entities markupsafe writes, NUL, CR); so both are read as plain characters in the same
# tokenizer state, and the tree builder (which only tells white space from the rest) builds the same tree
# for both, with the same text nodes moved to the same places (a text misplaced in a table, say).
# Each marker holds "&#60;": the kept result is used only if every marker came out once, as "&lt;", which
# is what text in an element that is not raw text becomes (in an attribute value, a comment, a <style> or
# a <script> it would come out otherwise, and the layout is then inlined message by message as before).
# <style>, <script> and comments are kept whole in the layout, never replaced. The last layouts used are
# tried first (``_RECENT``: a page is matched against one piece by piece, without cutting it up); pages
# that differ in more than their text (a link per customer in an attribute) each make a new layout, and
# after ``_MAX_UNSEEN`` new ones in a row the next ``_SKIP`` pages are inlined as they are.

_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_RAW_SPANS = re.compile(r"<(?:style|script)\b.*?</(?:style|script)\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_TEXT_RUN = re.compile(r">[\t\n\x0c ]*([^<]+)")
_HTML_SPACE = "\t\n\x0c "
# What a plain run never holds: markup ("<", and "&" but for the entities markupsafe writes), controls,
# the no-break space (serialized as &nbsp;), the byte order mark, private-use characters (the markers) and
# lone surrogates.
_UNPLAIN = re.compile(
    "[<\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xa0\ufeff\ue000-\uf8ff\ud800-\udfff]"
    "|&(?!(?:amp|lt|gt|quot|#39|#34);)"
)
# In texts joined with line feeds after a first one: a text that starts with white space or is empty.
_SPACE_FIRST = re.compile("\n[\t\n\x0c ]|\n\\Z")
_MARK_OUT = re.compile(f"{_MARK_OPEN}([0-9]+)&lt;{_MARK_CLOSE}")


@dataclass(frozen=True)
class _Layout:
    """A page with its plain runs taken out: ``pieces`` are what lies around them (one more than the runs),
    ``inlined`` the inliner's result for the page of markers as literal text and marker numbers (None: it
    cannot be used, see above)."""

    pieces: tuple[str, ...]
    inlined: tuple[str | int, ...] | None


_LAYOUTS: dict[str, _Layout] = {}  # by the page of markers
_RECENT: list[_Layout] = []  # the last layouts used, most recent first: tried before cutting a page up
_MAX_LAYOUTS = 64  # each holds its page about three times: a bound on the memory for large pages
_MAX_RECENT = 2
_UNSEEN = {"new": 0, "skip": 0}  # new layouts in a row; pages left to inline without looking for one
_MAX_UNSEEN = 64
_SKIP = 4096


def _marker(number: int) -> str:
    return f"{_MARK_OPEN}{number}&#60;{_MARK_CLOSE}"


def _text_out(text: str) -> str:
    """A plain run as the inliner writes it back: entities read, then ``&``, ``<`` and ``>`` escaped."""
    if "&" not in text and ">" not in text:
        return text
    return text.replace(">", "&gt;").replace("&#39;", "'").replace("&#34;", '"').replace("&quot;", '"')


def _plain(text: str) -> bool:
    return bool(text) and text[0] not in _HTML_SPACE and _UNPLAIN.search(text) is None


def _all_plain(texts: list[str]) -> bool:
    """Whether every text is a plain run: one scan of them all, then (only when it finds something that
    may be fine, such as an entity) one text at a time."""
    joined = "\n" + "\n".join(texts)
    # str.isprintable is false for every character _UNPLAIN refuses but "<" and "&" (and for a few more,
    # such as other spaces, which then take the slow way); line feeds and tabs are fine in a run.
    if (
        "<" not in joined
        and "&" not in joined
        and joined.replace("\n", " ").replace("\t", " ").isprintable()
        and _SPACE_FIRST.search(joined) is None
    ):
        return True
    return all(_plain(text) for text in texts)


def _texts_in(html: str, layout: _Layout) -> list[str] | None:
    """The plain runs of ``html`` if it is ``layout`` with plain runs between its pieces, else None."""
    pieces = layout.pieces
    if not html.startswith(pieces[0]):
        return None
    size = len(html)
    find, starts = html.find, html.startswith
    texts: list[str] = []
    append = texts.append
    at = len(pieces[0])
    for piece in pieces[1:]:  # each starts with "<", but the last when the page ends with a run ("")
        end = find("<", at)
        if end < 0:
            end = size
        if not starts(piece, end):
            return None
        append(html[at:end])
        at = end + len(piece)
    return texts if at == size and _all_plain(texts) else None


def _cut(html: str) -> tuple[list[str], list[str]]:
    """``html`` cut into pieces and the plain runs between them (the runs after a tag, but in <style>,
    <script> and comments)."""
    raw = [match.span() for match in _RAW_SPANS.finditer(html)]
    pieces: list[str] = []
    texts: list[str] = []
    at = 0
    for run in _TEXT_RUN.finditer(html):
        start, end = run.span(1)
        text = run.group(1)
        if not _plain(text) or (raw and any(a < start < b for a, b in raw)):
            continue
        pieces.append(html[at:start])
        texts.append(text)
        at = end
    pieces.append(html[at:])
    return pieces, texts


def _inline_cached(html: str) -> str | None:
    """``html`` inlined through its kept layout (inlined now when new); None when the layout cannot be
    used (a marker did not come out as text), and the page has to be inlined as it is."""
    if _UNSEEN["skip"] > 0:
        _UNSEEN["skip"] -= 1
        return None
    texts = None
    for layout in _RECENT:
        texts = _texts_in(html, layout)
        if texts is not None:
            _UNSEEN["new"] = 0
            break
    else:
        pieces, texts = _cut(html)
        if not texts:
            return None
        marked = "".join(piece + _marker(i) for i, piece in enumerate(pieces[:-1])) + pieces[-1]
        layout = _LAYOUTS.get(marked)  # type: ignore[assignment]
        if layout is not None:
            _UNSEEN["new"] = 0
        else:
            layout = _Layout(tuple(pieces), _inline_layout(marked, len(texts)))
            if len(_LAYOUTS) >= _MAX_LAYOUTS:
                _LAYOUTS.clear()
            _LAYOUTS[marked] = layout
            _UNSEEN["new"] += 1
            if _UNSEEN["new"] >= _MAX_UNSEEN:
                # Pages that differ in more than their text (a tracked link per message): the layouts
                # cost more than they save. Inline the next pages as they are, then look again.
                _UNSEEN.update(new=0, skip=_SKIP)
                _LAYOUTS.clear()
        _RECENT[:] = [layout, *(kept for kept in _RECENT if kept is not layout)][:_MAX_RECENT]
    if layout.inlined is None:
        return None
    return "".join(part if isinstance(part, str) else _text_out(texts[part]) for part in layout.inlined)


def _inline_layout(layout: str, markers: int) -> tuple[str | int, ...] | None:
    """The inlined layout as literal text and marker numbers, or None unless every marker came out once,
    as text (see above) and nothing else looks like one."""
    try:
        out = _INLINER.inline(layout)
    except (css_inline.InlineError, ValueError):
        return None  # inlined message by message: the message's own error is raised
    parts: list[str | int] = []
    for i, part in enumerate(_MARK_OUT.split(out)):
        parts.append(int(part) if i % 2 else part)
    numbers = sorted(part for part in parts if isinstance(part, int))
    if numbers != list(range(markers)) or any(
        _MARK_OPEN in part or _MARK_CLOSE in part for part in parts if isinstance(part, str)
    ):
        return None
    return tuple(parts)


# -- composing ----------------------------------------------------------------------------------------


def compose_email(
    message: OutgoingMessage,
    settings: EmailSettings,
    *,
    linesep: str = "\r\n",
    extra_headers: Iterable[tuple[str, str]] = (),
) -> ComposedEmail:
    """The email for ``message``; ``ComposeError`` when it cannot be built (see the module docstring).

    ``linesep`` is ``"\\r\\n"`` on the wire (SMTP) and may be ``"\\n"`` for files.
    """
    recipient = check_address(message.recipient)
    mid = message_id(message.idempotency_key, settings.message_id_domain)
    headers: list[tuple[str, str]] = [("From", settings._from_header), ("To", recipient)]
    if settings._reply_to_header:
        headers.append(("Reply-To", settings._reply_to_header))
    if message.subject is not None:
        headers.append(("Subject", message.subject))
    headers += [
        ("Date", _date(message.created_us)),
        ("Message-ID", mid),
    ]
    if settings.unsubscribe is not None and not message.transactional:
        headers += settings.unsubscribe.headers(message.customer_id)
    headers.append(("X-Idempotency-Key", message.idempotency_key))
    headers += extra_headers
    headers.append(("MIME-Version", "1.0"))

    lines = [_header(name, value, linesep) for name, value in headers]
    boundary = (
        "=_"
        + hashlib.sha256(
            f"boundary\x00{message.idempotency_key}".encode("utf-8", "surrogatepass")
        ).hexdigest()[:28]
    )
    text_part = _part("plain", message.body, linesep, boundary)
    if message.html is None:
        body = linesep.join(lines).encode("ascii") + linesep.encode("ascii") + text_part
    else:
        html = inline_css(message.html) if settings.inline_css else message.html
        html_part = _part("html", html, linesep, boundary)
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        sep = linesep.encode("ascii")
        delimiter = f"--{boundary}".encode("ascii")
        body = sep.join(
            [
                *(line.encode("ascii") for line in lines),
                b"",
                delimiter,
                text_part,
                delimiter,
                html_part,
                delimiter + b"--",
                b"",
            ]
        )
    return ComposedEmail(body, settings._envelope, recipient, mid)


@lru_cache(maxsize=1024)
def _date(instant_us: int) -> str:
    """The Date header's value for an instant (the messages of one tick share theirs: made once)."""
    return format_datetime(from_us(instant_us))


def _header(name: str, value: str, linesep: str) -> str:
    """One header field, encoded (RFC 2047) when it is not ASCII and folded when it is long."""
    if _CONTROL.search(value):
        # A line break in a header value is header injection; other control characters are no better.
        raise ComposeError(
            f"the {name} header contains a line break or control character", code="invalid_header"
        )
    if not value.isascii():
        return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep=linesep)
    line = f"{name}: {value}"
    if len(line) <= FOLD_AT:
        return line
    # Fold at single spaces: the space starts the continuation line, so unfolding restores the value.
    # Never right after the name: the value's first word stays on the first line.
    first, *rest = value.split(" ")
    out: list[str] = []
    current = f"{name}: {first}"
    for word in rest:
        if len(current) + 1 + len(word) > FOLD_AT:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}"
    out.append(current)
    if any(len(piece) > MAX_LINE for piece in out):
        raise ComposeError(
            f"the {name} header has a word longer than {MAX_LINE} characters", code="invalid_header"
        )
    return linesep.join(out)


def _part(subtype: str, text: str, linesep: str, boundary: str) -> bytes:
    """The headers and the encoded body of one text part (without the boundary line)."""
    if "\r" in text:  # (a page without one is not scanned twice more)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    ascii_text = text.encode("ascii") if text.isascii() else None
    plain = (
        ascii_text is not None
        and not ascii_text.translate(None, _SEVEN_BIT)
        and not _has_long_line(text)
        and f"--{boundary}" not in text
    )
    if plain and ascii_text is not None:
        payload = ascii_text if linesep == "\n" else ascii_text.replace(b"\n", linesep.encode("ascii"))
        encoding = "7bit"
    else:
        # Neither encoding can produce the boundary: quoted-printable writes "=" as "=3D", and base64 has
        # no "_". The text part stays readable as quoted-printable; the HTML part, read by programs only,
        # is base64, which costs a fifth of quoted-printable for a page of HTML.
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ComposeError(f"the {subtype} part is not valid text: {exc}", code="invalid_body") from exc
        if subtype == "html":
            encoded = binascii.b2a_base64(raw, newline=False)
            lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
            encoding, payload = "base64", linesep.encode().join(lines)
        else:
            encoding = "quoted-printable"
            payload = binascii.b2a_qp(raw, istext=True).replace(b"\n", linesep.encode())
    head = f'Content-Type: text/{subtype}; charset="utf-8"{linesep}Content-Transfer-Encoding: {encoding}'
    return f"{head}{linesep}{linesep}".encode("ascii") + payload
