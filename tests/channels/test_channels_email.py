"""Email: composition (MIME structure, headers, unsubscribe, inlined CSS) and the SMTP adapter against a
real aiosmtpd server on 127.0.0.1, reading back what arrived."""

from __future__ import annotations

import email
import re
import shutil
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote

import pytest
from channel_servers import (
    LocalHttpServer,
    LocalSmtpServer,
    SmtpRecorder,
    client_tls_context,
    closed_port,
    password_authenticator,
    self_signed_certificate,
    server_tls_context,
)

from orchestrator.channels import EmailSettings, OutgoingMessage, SmtpAdapter, SmtpSettings, UnsubscribeLinks
from orchestrator.channels._mail import ComposeError, check_address, compose_email, message_id
from orchestrator.channels._signing import Keyring

LINKS = UnsubscribeLinks(
    keys=Keyring.single("test-secret-0123456789abcdef"),
    url="https://shop.example/unsubscribe",
    mailto="unsubscribe@shop.example",
)
SETTINGS = EmailSettings(
    sender="The Shop <news@shop.example>",
    reply_to="Customer Care <care@shop.example>",
    message_id_domain="mail.shop.example",
    unsubscribe=LINKS,
)
HTML = """<html><head><style>
p.lead { color: #336699; font-size: 18px; }
a.button { background: #e4572e; }
@media (max-width: 600px) { p.lead { font-size: 14px; } }
</style></head>
<body><p class="lead">Hello Ann</p><p><a class="button" href="https://shop.example/cart">Your cart</a></p>
<p><a href="{unsub}">Unsubscribe</a></p></body></html>"""


def make_email(key: str = "cart/v1/C1/7/remind", **overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "idempotency_key": key,
        "channel": "email",
        "recipient": "ann@example.com",
        "customer_id": "C1",
        "journey_id": "cart",
        "step": "remind",
        "subject": "Ann, your cart is waiting",
        "body": "Hello Ann,\nyour cart is waiting.\n",
        "html": HTML.replace("{unsub}", LINKS.for_template("C1")["unsubscribe"]),
        "created_us": 1_700_000_000_000_000,
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts_of(parsed: EmailMessage) -> tuple[str, str]:
    text, html = list(parsed.iter_parts())
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    return str(text.get_content()), str(html.get_content())


# -- composition -----------------------------------------------------------------------------------


def test_composed_email_structure_and_headers() -> None:
    message = make_email()
    composed = compose_email(message, SETTINGS)
    parsed = parse(composed.data)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["From"] == "The Shop <news@shop.example>"
    assert parsed["Reply-To"] == "Customer Care <care@shop.example>"
    assert parsed["To"] == "ann@example.com"
    assert parsed["Subject"] == "Ann, your cart is waiting"
    assert parsed["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert (
        parsed["Message-ID"]
        == composed.message_id
        == message_id(message.idempotency_key, "mail.shop.example")
    )
    assert parsed["X-Idempotency-Key"] == "cart/v1/C1/7/remind"
    assert composed.envelope_from == "news@shop.example" and composed.recipient == "ann@example.com"
    text, html = parts_of(parsed)
    assert text.replace("\r\n", "\n") == "Hello Ann,\nyour cart is waiting.\n"
    assert "Hello Ann" in html
    # On the wire: CRLF line endings only, and no line longer than RFC 5322 allows.
    assert b"\n" not in composed.data.replace(b"\r\n", b"")
    assert max(len(line) for line in composed.data.split(b"\r\n")) <= 998


def test_css_is_inlined_and_media_queries_kept() -> None:
    _, html = parts_of(parse(compose_email(make_email(), SETTINGS).data))
    assert re.search(r'<p class="lead" style="color: #336699;\s*font-size: 18px;?">Hello Ann</p>', html), html
    assert re.search(
        r'<a class="button" href="https://shop.example/cart" style="background: #e4572e;?">', html
    )
    # Rules that cannot be inlined stay in a <style> block; the inlined ones are gone from it.
    assert "@media (max-width: 600px)" in html and "p.lead { color" not in html


def test_inlining_can_be_switched_off_and_html_without_style_is_untouched() -> None:
    plain = EmailSettings(sender="news@shop.example", inline_css=False)
    _, html = parts_of(parse(compose_email(make_email(), plain).data))
    assert "p.lead { color: #336699" in html and 'style="color' not in html
    fragment = "<p>Hello <b>Ann</b></p>"
    _, untouched = parts_of(parse(compose_email(make_email(html=fragment), SETTINGS).data))
    assert untouched.rstrip("\r\n") == fragment


def test_remote_stylesheets_are_not_fetched() -> None:
    with LocalHttpServer() as server:
        linked = (
            f'<html><head><link rel="stylesheet" href="{server.url("/evil.css")}"><style>p {{ color: red }}'
            "</style></head><body><p>x</p></body></html>"
        )
        compose_email(make_email(html=linked), SETTINGS)
    assert server.requests == []


LAYOUT = (
    "<html><head><title>For {name}</title><style>td {{ font-size: 14px; }} p:empty {{ color: red; }} "
    "a[title] {{ color: blue; }} b:first-child {{ font-weight: 700; }} .x > b {{ color: green; }}"
    "</style></head>"
    '<body><table width="600"><tr><td style="padding:8px">Hi {name}, {price}</td></tr>{stray}<tr><td>'
    '<a title="{name}" href="https://shop.example/c">{name}</a></td></tr></table>'
    '<div class="x"><b>{name}</b> and <b>{price}</b></div><p>{name}</p><pre>\n{name}</pre>'
    "<!-- {name} > x --></body></html>"
)
TEXTS = [
    "Ann", "O'Brien & Sons", 'say "hi"', "1 < 2 > 0", "Zoë 中文", "  lead", "tab\there", "a\nb", "", " ",
    "\xa0nbsp", "&amp; raw", "Ann\r\n", "x<b>y</b>", "\ue000", "\x0cf", "\x01", "a" * 300,
]  # fmt: skip


@pytest.fixture
def fresh_layouts() -> Iterator[None]:
    """No kept layout before the test, and none left after it for the next."""
    from orchestrator.channels import _mail

    def clear() -> None:
        _mail._LAYOUTS.clear()
        _mail._RECENT.clear()
        _mail._UNSEEN.update(new=0, skip=0)

    clear()
    yield
    clear()


def test_css_inlined_once_per_layout_is_what_the_inliner_gives(fresh_layouts: None) -> None:
    from markupsafe import escape

    from orchestrator.channels import _mail

    reused = 0
    for name in TEXTS:
        for price in TEXTS[:6]:
            for stray in ("", "Misplaced {name}"):
                # As a template renders them: escaped values; and raw text too (a |safe value).
                for value in (str(escape(name)), name):
                    page = LAYOUT.format(name=value, price=escape(price), stray=stray.format(name=value))
                    assert _mail.inline_css(page) == _mail._INLINER.inline(page), page
                    reused += bool(_mail._RECENT) and _mail._texts_in(page, _mail._RECENT[0]) is not None
    # Many pages were inlined through a kept layout (the others, with texts that are not plain or a new
    # name in the title attribute, which is part of the layout, as they are).
    assert reused > len(TEXTS) * 6 * 2


def test_a_layout_whose_markers_do_not_come_out_as_text_is_not_used(fresh_layouts: None) -> None:
    from orchestrator.channels import _mail

    # The text after "<!--" and ">" is a run to the cutter, but it is inside a comment: the marker comes
    # out as it went in, and the page is inlined as it is.
    page = "<style>p { color: red }</style><p>Hi</p><!-- a > b --><p>Bo</p>"
    assert _mail.inline_css(page) == _mail._INLINER.inline(page)
    assert _mail._RECENT and _mail._RECENT[0].inlined is not None
    page = "<style>p { color: red }</style><p>Hi</p><textarea><!-- a > b --></textarea>"
    assert _mail.inline_css(page) == _mail._INLINER.inline(page)


def test_pages_that_differ_in_their_tags_are_inlined_as_they_are_after_a_while(fresh_layouts: None) -> None:
    from orchestrator.channels import _mail

    # A link per message in an attribute: every page is a new layout; after _MAX_UNSEEN of them in a row
    # the next pages skip the layouts (and the results stay the inliner's).
    for i in range(_mail._MAX_UNSEEN + 10):
        page = f'<style>a {{ color: red }}</style><p><a href="https://t.example/{i}">Hi {i}</a></p>'
        assert _mail.inline_css(page) == _mail._INLINER.inline(page)
    assert _mail._UNSEEN["skip"] == _mail._SKIP - 10
    assert len(_mail._LAYOUTS) <= _mail._MAX_LAYOUTS


def test_unsubscribe_headers_and_links() -> None:
    parsed = parse(compose_email(make_email(), SETTINGS).data)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = re.findall(r"<([^>]+)>", str(parsed["List-Unsubscribe"]))
    assert https.startswith("https://shop.example/unsubscribe/")
    token = https.rsplit("/", 1)[1]
    assert LINKS.read(token) == ("C1", "email")
    assert LINKS.verify("C1", "email", token)
    assert not LINKS.verify("C2", "email", token)  # one customer's link cannot unsubscribe another
    assert not LINKS.verify("C1", "sms", token)
    assert mailto.startswith("mailto:unsubscribe@shop.example?subject=")
    assert unquote(mailto.split("subject=")[1]) == f"unsubscribe {token}"
    # The link the template shows is the one in the header.
    assert LINKS.for_template("C1") == {"unsubscribe": https}
    _, html = parts_of(parsed)
    assert https in html


def test_transactional_email_has_no_unsubscribe_headers() -> None:
    parsed = parse(compose_email(make_email(transactional=True), SETTINGS).data)
    assert parsed["List-Unsubscribe"] is None and parsed["List-Unsubscribe-Post"] is None
    assert parse(compose_email(make_email(), SETTINGS).data)["List-Unsubscribe"] is not None


def test_mailto_only_unsubscribe_has_no_one_click_header() -> None:
    links = UnsubscribeLinks(keys=Keyring.single("another-secret-0123456789"), mailto="unsub@shop.example")
    settings = EmailSettings(sender="news@shop.example", unsubscribe=links)
    parsed = parse(compose_email(make_email(), settings).data)
    assert str(parsed["List-Unsubscribe"]).startswith("<mailto:unsub@shop.example?subject=")
    assert parsed["List-Unsubscribe-Post"] is None  # RFC 8058 one-click needs an https link
    assert links.for_template("C1")["unsubscribe"].startswith("mailto:")


def test_without_html_the_email_is_plain_text() -> None:
    parsed = parse(compose_email(make_email(html=None), SETTINGS).data)
    assert parsed.get_content_type() == "text/plain"
    assert str(parsed.get_content()).replace("\r\n", "\n") == "Hello Ann,\nyour cart is waiting.\n"


def test_non_ascii_headers_and_bodies_round_trip() -> None:
    settings = EmailSettings(sender="Zoë's Boutique <news@boutique.example>")
    subject = "Zoë, votre panier vous attend depuis longtemps déjà — revenez vite, il reste 3 articles 🛒"
    body = "Bonjour Zoë,\n" + "é" * 300 + "\nligne avec espace finale   \n= signe égal\n"
    message = make_email(subject=subject, body=body, html="<p>Grüße, " + "ü" * 2000 + "</p>")
    data = compose_email(message, settings).data
    assert data.isascii()  # 7bit on the wire: no SMTPUTF8 or 8BITMIME needed
    assert max(len(line) for line in data.split(b"\r\n")) <= 78 + 2
    parsed = parse(data)
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "Zoë's Boutique"
    text, html = parts_of(parsed)
    assert text.replace("\r\n", "\n") == body
    assert html.rstrip("\r\n") == "<p>Grüße, " + "ü" * 2000 + "</p>"


def test_composition_is_deterministic_and_the_boundary_cannot_be_forged() -> None:
    first = compose_email(make_email(), SETTINGS).data
    assert first == compose_email(make_email(), SETTINGS).data  # a resend is byte-for-byte the same
    boundary = re.search(rb'boundary="([^"]+)"', first)
    assert boundary is not None
    # A customer value carrying the (predictable) boundary must not split the message.
    forged = f"before\n--{boundary.group(1).decode()}\nContent-Type: text/html\n\n<script>x</script>\n"
    parsed = parse(compose_email(make_email(body=forged), SETTINGS).data)
    assert len(list(parsed.iter_parts())) == 2
    text, _ = parts_of(parsed)
    assert text.replace("\r\n", "\n") == forged


def test_long_ascii_headers_are_folded_and_unfold_to_the_same_value() -> None:
    subject = " ".join(f"word{i}" for i in range(60))
    data = compose_email(make_email(subject=subject), SETTINGS).data
    raw = re.search(rb"\r\nSubject: .*?\r\n(?! )", data, re.DOTALL)
    assert raw is not None
    lines = raw.group(0).strip(b"\r\n").split(b"\r\n")
    assert len(lines) > 3 and max(len(line) for line in lines) <= 78
    assert parse(data)["Subject"] == subject


@pytest.mark.parametrize(
    ("overrides", "code", "suppress"),
    [
        ({"subject": "Hi\r\nBcc: all@example.com"}, "invalid_header", False),
        ({"subject": "Hi\x00"}, "invalid_header", False),
        ({"recipient": "not-an-address"}, "invalid_address", True),
        ({"recipient": "Ann <ann@example.com>"}, "invalid_address", True),
        ({"recipient": "ann@localhost"}, "invalid_address", True),
        ({"recipient": "zoë@example.com"}, "invalid_address", True),
        ({"body": "lone \ud800 surrogate"}, "invalid_body", False),
    ],
)
def test_compose_refuses_what_cannot_be_sent(overrides: dict[str, object], code: str, suppress: bool) -> None:
    with pytest.raises(ComposeError) as info:
        compose_email(make_email(**overrides), SETTINGS)
    assert info.value.code == code and info.value.suppress is suppress


def test_check_address() -> None:
    assert check_address(" Ann.Lee+promo@Example.com ") == "Ann.Lee+promo@Example.com"
    assert check_address("ann@bücher.example") == "ann@xn--bcher-kva.example"
    for bad in (
        "@example.com",
        "ann@",
        "a..b@example.com",
        ".a@example.com",
        "a@-x.example",
        "a b@example.com",
    ):
        with pytest.raises(ComposeError):
            check_address(bad)


def test_settings_are_checked_once_at_configuration() -> None:
    with pytest.raises(ValueError, match="sender"):
        EmailSettings(sender="The Shop")
    with pytest.raises(ValueError, match="control character"):
        EmailSettings(sender="news@shop.example\r\nBcc: x@y.example")
    with pytest.raises(ValueError, match="message_id_domain"):
        EmailSettings(sender="news@shop.example", message_id_domain="bad domain")
    with pytest.raises(ValueError, match="https"):
        UnsubscribeLinks(keys=Keyring.single("s" * 20), url="http://shop.example/u")
    with pytest.raises(ValueError, match="without a query"):
        UnsubscribeLinks(keys=Keyring.single("s" * 20), url="https://shop.example/u?list=news")
    with pytest.raises(ValueError, match="at least 16"):
        UnsubscribeLinks(keys=Keyring.single("short"), url="https://shop.example/u")
    with pytest.raises(ValueError, match="url, a mailto"):
        UnsubscribeLinks(keys=Keyring.single("s" * 20))


# -- SMTP against a local aiosmtpd server ---------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[LocalSmtpServer]:
    with LocalSmtpServer(SmtpRecorder()) as server:
        yield server


def plain_adapter(port: int, timeout_s: float = 3.0) -> SmtpAdapter:
    return SmtpAdapter(SmtpSettings("127.0.0.1", port, security="none", timeout_s=timeout_s), SETTINGS)


def test_smtp_delivers_and_what_arrives_is_complete(smtp: LocalSmtpServer) -> None:
    message = make_email()
    result = plain_adapter(smtp.port).send(message)
    assert result.ok and result.provider_id == message_id(message.idempotency_key, "mail.shop.example")
    [received] = smtp.handler.messages
    assert received.mail_from == "news@shop.example" and received.rcpt_tos == ["ann@example.com"]
    parsed = parse(received.content)
    assert parsed["Message-ID"] == result.provider_id
    assert parsed["Subject"] == "Ann, your cart is waiting" and parsed["Reply-To"] == SETTINGS.reply_to
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = parts_of(parsed)
    assert text.replace("\r\n", "\n") == "Hello Ann,\nyour cart is waiting.\n"
    assert 'style="color: #336699;' in html and "<style>" in html and "p.lead { color" not in html


def test_smtp_same_key_is_delivered_once(smtp: LocalSmtpServer) -> None:
    adapter = plain_adapter(smtp.port)
    first = adapter.send(make_email())
    again = adapter.send(make_email(subject="changed"))
    other = adapter.send(make_email("another-key"))
    assert first == again and first.ok and other.ok and other.provider_id != first.provider_id
    assert len(smtp.handler.messages) == 2


def test_smtp_hard_bounce_is_permanent_and_suppresses(smtp: LocalSmtpServer) -> None:
    smtp.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: user unknown"
    result = plain_adapter(smtp.port).send(make_email(recipient="gone@example.com"))
    assert result.outcome == "permanent" and result.suppress and result.code == "smtp_550"
    assert "user unknown" in (result.error or "") and smtp.handler.messages == []


def test_smtp_temporary_refusal_is_transient(smtp: LocalSmtpServer) -> None:
    smtp.handler.rcpt_replies["busy@example.com"] = "451 4.3.0 mailbox busy, try later"
    result = plain_adapter(smtp.port).send(make_email(recipient="busy@example.com"))
    assert result.outcome == "transient" and result.code == "smtp_451" and not result.suppress


def test_smtp_content_refusal_is_permanent_without_suppression(smtp: LocalSmtpServer) -> None:
    smtp.handler.data_reply = "554 5.7.1 message rejected as spam"
    result = plain_adapter(smtp.port).send(make_email())
    assert result.outcome == "permanent" and result.code == "smtp_554" and not result.suppress


def test_smtp_timeout_is_transient(smtp: LocalSmtpServer) -> None:
    smtp.handler.data_delay_s = 3.0  # the server accepts the data, then says nothing for 3 s
    result = plain_adapter(smtp.port, timeout_s=0.3).send(make_email())
    assert result.outcome == "transient" and result.code == "timeout"


def test_smtp_unreachable_server_is_transient() -> None:
    result = plain_adapter(closed_port(), timeout_s=1).send(make_email())
    assert result.outcome == "transient" and result.code == "connection"


def test_smtp_invalid_address_is_refused_without_connecting(smtp: LocalSmtpServer) -> None:
    result = plain_adapter(smtp.port).send(make_email(recipient="not an address"))
    assert result.outcome == "permanent" and result.suppress and result.code == "invalid_address"
    assert smtp.handler.connections == 0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_smtp_starttls_and_auth(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    handler = SmtpRecorder()
    options = {
        "tls_context": server_tls_context(cert, key),
        "require_starttls": True,
        "authenticator": password_authenticator("mailer", "s3cret"),
        "auth_required": True,
        "auth_require_tls": True,
    }
    with LocalSmtpServer(handler, **options) as server:
        settings = SmtpSettings(
            "127.0.0.1",
            server.port,
            username="mailer",
            password="s3cret",
            ssl_context=client_tls_context(cert),
        )
        result = SmtpAdapter(settings, SETTINGS).send(make_email())
        wrong = SmtpSettings(
            "127.0.0.1",
            server.port,
            username="mailer",
            password="wrong",
            ssl_context=client_tls_context(cert),
        )
        refused = SmtpAdapter(wrong, SETTINGS).send(make_email("k2"))
        untrusted = SmtpSettings("127.0.0.1", server.port, username="mailer", password="s3cret")
        unverified = SmtpAdapter(untrusted, SETTINGS).send(make_email("k3"))
    assert result.ok
    [received] = handler.messages
    assert received.tls and received.authenticated
    assert (
        refused.outcome == "transient" and refused.code == "smtp_auth"
    )  # fix the settings, then it goes out
    assert unverified.outcome == "transient" and "CERTIFICATE_VERIFY_FAILED" in (unverified.error or "")


def test_smtp_implicit_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    handler = SmtpRecorder()
    with LocalSmtpServer(handler, ssl_context=server_tls_context(cert, key)) as server:
        settings = SmtpSettings(
            "127.0.0.1", server.port, security="tls", ssl_context=client_tls_context(cert)
        )
        result = SmtpAdapter(settings, SETTINGS).send(make_email())
    assert result.ok and len(handler.messages) == 1 and handler.messages[0].tls


def test_smtp_settings_validation() -> None:
    with pytest.raises(ValueError, match="security"):
        SmtpSettings("h", security="ssl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both"):
        SmtpSettings("h", username="u")
    with pytest.raises(ValueError, match="timeout"):
        SmtpSettings("h", timeout_s=0)
    assert "hunter2" not in repr(SmtpSettings("h", username="u", password="hunter2"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        "x" * 998,
        "x" * 999,
        "a\n" + "x" * 999,
        "x" * 998 + "\n" + "y" * 998,
        "\n" * 2000,
        "é" * 999,
    ],
)
def test_the_long_line_check_agrees_with_its_definition(text: str) -> None:
    from orchestrator.channels._mail import MAX_LINE, _has_long_line

    assert _has_long_line(text) == (re.search(f"[^\n]{{{MAX_LINE + 1}}}", text) is not None)


@pytest.mark.parametrize(
    "text", ["", "plain\ttext\n", "bell\x07", "del\x7f", "é", "x" * 999, "form\x0cfeed", "a --=_b", "~ ok"]
)
def test_a_part_is_7bit_exactly_when_its_text_is_short_lines_of_printable_ascii(text: str) -> None:
    from orchestrator.channels._mail import MAX_LINE, _part

    expected = (
        re.fullmatch(r"[\t\n\x20-\x7e]*", text) is not None
        and re.search(f"[^\n]{{{MAX_LINE + 1}}}", text) is None
        and "--=_b" not in text
    )
    head = _part("plain", text, "\r\n", "=_b").split(b"\r\n\r\n")[0]
    assert (b"Content-Transfer-Encoding: 7bit" in head) == expected
