"""The template security suite: known Jinja sandbox escapes and resource attacks are refused with a clear
``TemplateError``, nothing is rendered or sent, nothing leaks, and the context is left as it was."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.channels import TemplateError, TemplateRenderer
from orchestrator.engine._render import message_row
from orchestrator.language._models import Send

SECRET = "top-secret-value-6bd1"


def fresh_context() -> dict[str, Any]:
    return {
        "customer": {"id": "C1", "name": "Ann", "tags": ["vip"], "orders": [{"sku": "A-1", "qty": 2}]},
        "metrics": {"days_quiet": 12.0},
        "journey": {"id": "winback", "version": 1, "step": "s1"},
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "self_include.txt").write_text("x{% include 'self_include.txt' %}", encoding="utf-8")
    (templates / "big_loop.txt").write_text(
        "{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}", encoding="utf-8"
    )
    (templates / "macros.txt").write_text(
        "{% macro boom(n) %}{% if n %}{{ boom(n - 1) }}{{ boom(n - 1) }}{% endif %}{% endmacro %}",
        encoding="utf-8",
    )
    (tmp_path / "secret.txt").write_text(SECRET, encoding="utf-8")
    return templates


@pytest.fixture
def renderer(root: Path) -> TemplateRenderer:
    return TemplateRenderer(root)


# (payload, kind, a fragment of the reason)
FORMAT_STRINGS = [
    ("{{ '{0.__class__}'.format(customer) }}", "security", "'__class__' of 'dict' object is unsafe"),
    ("{{ '{0.__class__.__init__.__globals__}'.format(1) }}", "security", "is unsafe"),
    ("{{ '{x.__class__}'.format_map({'x': customer}) }}", "security", "is unsafe"),
    ("{{ '{name.__class__.__mro__}'.format_map(customer) }}", "security", "is unsafe"),
    ("{{ '{0[__class__]}'.format(customer) }}", "security", "is unsafe"),
    ("{{ '{0.__globals__}'.format(range) }}", "security", "not data"),
    ("{{ '{0}'.format(cycler) }}", "security", "not data"),
    ("{{ '%s' % cycler }}", "security", "not data"),
    ("{{ '%r' % (joiner,) }}", "security", "not data"),
    ("{{ '%s'|format(namespace) }}", "security", "not data"),
    ("{{ '{0:{1}}'.format('x', 10**9) }}", "security", "nested replacement fields"),
]
ATTR_FILTER = [
    ("{{ customer|attr('__class__') }}", "security", "'__class__' of 'dict' object is unsafe"),
    (
        "{{ customer|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
        "security",
        "'__class__' of 'dict' object is unsafe",
    ),
    ("{{ customer|attr('\\u005f\\u005fclass\\u005f\\u005f') }}", "security", "is unsafe"),
    ("{{ customer|attr('_' ~ '_class_' ~ '_') }}", "security", "is unsafe"),
    ("{{ customer|attr('update') }}", "security", "'update' of 'dict' object is unsafe"),
    ("{{ customer|attr('items') }}", "security", "not data"),
    ("{{ [customer]|map(attribute='__class__')|list }}", "security", "is unsafe"),
    ("{{ [customer]|selectattr('__class__')|list }}", "security", "is unsafe"),
    ("{{ [customer]|groupby('__class__')|list }}", "security", "is unsafe"),
    ("{% filter attr('__class__') %}x{% endfilter %}", "security", "is unsafe"),
]
WALKS = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "security", "is unsafe"),
    ("{{ ().__class__.__base__.__subclasses__() }}", "security", "is unsafe"),
    ("{{ customer.__class__.__mro__ }}", "security", "is unsafe"),
    ("{{ customer.orders[0].__class__.__subclasses__() }}", "security", "is unsafe"),
    ("{{ range.__globals__ }}", "security", "is unsafe"),
    ("{{ range.__closure__ }}", "security", "is unsafe"),
    ("{{ cycler.__init__.__globals__.os.system('id') }}", "security", "is unsafe"),
    ("{{ joiner.__init__.__globals__ }}", "security", "is unsafe"),
    ("{{ namespace.__init__.__globals__ }}", "security", "is unsafe"),
    ("{{ self.__init__.__globals__.__builtins__ }}", "security", "is unsafe"),
    ("{{ self._TemplateReference__context }}", "security", "is unsafe"),
    ("{{ customer.get.__self__ }}", "security", "is unsafe"),
    ("{{ customer.name.__len__() }}", "security", "is unsafe"),
    ("{% for x in [1] %}{{ loop.__class__ }}{% endfor %}", "security", "is unsafe"),
    ("{{ lipsum.__globals__ }}", "undefined", "'lipsum' is undefined"),
]
JINJA_OBJECTS = [
    ("{{ self }}", "security", "not data"),
    ("{{ cycler }}", "security", "not data"),
    ("{{ cycler(1, 2)|string }}", "security", "not data"),
    ("{{ joiner }}", "security", "not data"),
    ("{{ namespace }}", "security", "not data"),
    ("{% set ns = namespace(a=1) %}{{ ns }}", "security", "not data"),
    (
        "{% set ns = namespace() %}{% set ns._secret = 1 %}",
        "security",
        "namespace attribute '_secret' is private",
    ),
    ("{% set ns = namespace() %}{% set ns.__class__ = 1 %}", "security", "is private"),
    ("{{ range }}", "security", "not data"),
    ("{{ range|e }}", "security", "not data"),
    ("{{ customer.name.upper }}", "security", "not data"),
    ("{{ dict.fromkeys }}", "security", "not data"),
    ("{{ 'x' ~ cycler }}", "security", "not data"),
    ("{{ [joiner]|join(',') }}", "security", "not data"),
    ("{{ lipsum(1) }}", "undefined", "'lipsum' is undefined"),
    ("{{ [1, 2]|random }}", "syntax", "No filter named 'random'"),
]
LOOKUPS = [
    ("{{ config }}", "undefined", "'config' is undefined"),
    ("{{ config.__class__.__init__.__globals__ }}", "security", "is unsafe"),
    ("{{ request }}", "undefined", "'request' is undefined"),
    ("{{ request.application.__globals__ }}", "undefined", "'request' is undefined"),
    ("{{ url_for.__globals__ }}", "undefined", "'url_for' is undefined"),
    ("{{ get_flashed_messages.__globals__ }}", "undefined", "is undefined"),
    ("{{ os }}", "undefined", "'os' is undefined"),
]
MUTATIONS = [
    ("{{ customer.update({'name': 'Bob'}) }}", "security", "'update' of 'dict' object is unsafe"),
    ("{{ customer.tags.append('x') }}", "security", "'append' of 'list' object is unsafe"),
    ("{{ customer.tags.extend(['x']) }}", "security", "'extend' of 'list' object is unsafe"),
    ("{{ customer.tags.pop() }}", "security", "'pop' of 'list' object is unsafe"),
    ("{{ customer.tags.sort() }}", "security", "'sort' of 'list' object is unsafe"),
    ("{{ customer.clear() }}", "security", "'clear' of 'dict' object is unsafe"),
    ("{{ customer.orders[0].setdefault('x', 1) }}", "security", "'setdefault' of 'dict' object is unsafe"),
    ("{{ customer.__setitem__('name', 'Bob') }}", "security", "is unsafe"),
    ("{% set t = customer.tags %}{{ t.insert(0, 'x') }}", "security", "'insert' of 'list' object is unsafe"),
    ("{% set customer.name = 'Bob' %}", "runtime", "cannot assign attribute on non-namespace object"),
    ("{% set x = customer %}{% set x.name = 'Bob' %}", "runtime", "cannot assign attribute on non-namespace"),
]
AMPLIFICATION = [
    ("{{ 'a' * 10**9 }}", "limit", "the result of '*' would be larger than the limit"),
    ("{{ ['a'] * 10**9 }}", "limit", "the result of '*' would be larger than the limit"),
    ("{{ 'a' * 1000000 ~ 'b' * 1000000 }}", "limit", "larger than the limit"),
    ("{{ 9 ** 9999999 }}", "limit", "more than 16384 bits"),
    ("{{ '%0999999999d' % 1 }}", "limit", "the result of '%' would be larger"),
    ("{{ 'x'|center(10**9) }}", "limit", "filter 'center' would be larger"),
    ("{{ 'x'.ljust(10**9) }}", "limit", "the result of ljust() would be larger"),
    ("{{ range(10**18)|length }}", "limit", "range() of 1000000000000000000 items exceeds"),
    ("{% for i in range(100000000) %}{% endfor %}", "limit", "range() of 100000000 items exceeds"),
    (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}"
        "{% endfor %}{% endfor %}",
        "limit",
        "more than 100000 loop iterations and calls",
    ),
    (
        "{% for a in range(9999) %}{% for b in range(9999) %}xxxxxxxxxx{% endfor %}{% endfor %}",
        "limit",
        "output is longer than the limit",
    ),
    (
        "{% set x %}{% for a in range(9999) %}{% for b in range(99) %}{{ 'y' * 1000 }}{% endfor %}"
        "{% endfor %}{% endset %}",
        "limit",
        "template printed more than",
    ),
    ("{% include 'big_loop.txt' %}", "limit", "more than 100000 loop iterations"),
]
RECURSION = [
    ("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "limit", "calls nested deeper than 64"),
    ("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "limit", "calls nested deeper than 64"),
    ("{% from 'macros.txt' import boom %}{{ boom(40) }}", "limit", "loop iterations and calls"),
    ("{% for x in customer.tags recursive %}{{ loop(customer.tags) }}{% endfor %}", "limit", "nested deeper"),
    ("{% include 'self_include.txt' %}", "limit", "recursion too deep"),
]
FILES = [
    ("{% include '../secret.txt' %}", "security", "leaves the template root"),
    ("{% include '/etc/passwd' %}", "security", "leaves the template root"),
    ("{% import 'os' as os %}", "not_found", "template 'os' not found"),
    ("{% extends '../secret.txt' %}", "security", "leaves the template root"),
]
PAYLOADS = (
    FORMAT_STRINGS
    + ATTR_FILTER
    + WALKS
    + JINJA_OBJECTS
    + LOOKUPS
    + MUTATIONS
    + AMPLIFICATION
    + RECURSION
    + FILES
)

# What must never appear in an error shown to an operator: class reprs, memory addresses, file contents.
LEAKS = re.compile(r"<class |<function |<built-in |<bound method | at 0x[0-9a-f]+|" + SECRET)


@pytest.mark.parametrize(("source", "kind", "reason"), PAYLOADS)
def test_payload_is_refused(renderer: TemplateRenderer, source: str, kind: str, reason: str) -> None:
    context = fresh_context()
    with pytest.raises(TemplateError) as info:
        renderer.render_string(source, context, name="body")
    err = info.value
    assert err.kind == kind, str(err)
    # The template where it happened: the inline one, or the file it included or imported.
    assert err.template in ("body", "big_loop.txt", "macros.txt", "self_include.txt"), str(err)
    assert reason in err.message, str(err)
    assert not LEAKS.search(str(err)), str(err)
    assert context == fresh_context()  # nothing in the data was changed


@pytest.mark.parametrize(("source", "kind", "reason"), PAYLOADS[::5])
def test_payload_is_refused_with_a_prepared_context_too(
    renderer: TemplateRenderer, source: str, kind: str, reason: str
) -> None:
    prepared = renderer.prepare(fresh_context())
    with pytest.raises(TemplateError) as info:
        renderer.render_string(source, prepared)
    assert info.value.kind == kind and reason in info.value.message


@pytest.mark.parametrize(
    ("source", "kind", "reason"), FORMAT_STRINGS + ATTR_FILTER + MUTATIONS[:4] + AMPLIFICATION[:3]
)
def test_payload_in_a_template_file_is_refused_and_nothing_is_sent(
    root: Path, renderer: TemplateRenderer, source: str, kind: str, reason: str
) -> None:
    # The engine's own send path: a template that fails makes a "failed" ledger row, never a queued one,
    # and the dispatcher only hands queued rows to an adapter.
    (root / "evil.txt").write_text(source, encoding="utf-8")
    context = fresh_context()
    row = message_row(
        renderer=renderer,
        send=Send(channel="sms", template="evil.txt"),
        customer={**context["customer"], "phone": "+14155550123"},
        metrics=context["metrics"],
        journey=context["journey"],
        base={"idempotency_key": "k1"},
    )
    assert row["status"] == "failed"
    assert row["body"] is None and row["subject"] is None and row["html"] is None
    assert row["reason"].startswith("template: evil.txt") and reason in row["reason"]
    assert not LEAKS.search(row["reason"])


def test_output_bound_is_per_render_and_configurable(root: Path) -> None:
    small = TemplateRenderer(root, max_output_chars=100, max_call_depth=3)
    assert small.render_string("{{ 'x' * 100 }}", {}) == "x" * 100
    with pytest.raises(TemplateError, match="output is longer than the limit of 100"):
        small.render_string("{{ 'x' * 101 }}", {})
    nested = (
        "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ c() }}{% endmacro %}"
        "{% macro c() %}c{% endmacro %}"
    )
    assert small.render_string(nested + "{{ a() }}", {}) == "c"
    with pytest.raises(TemplateError, match="calls nested deeper than 3"):
        small.render_string(nested + "{% macro z() %}{{ a() }}{% endmacro %}{{ z() }}", {})


def test_legitimate_templates_still_render(renderer: TemplateRenderer) -> None:
    context = {
        **fresh_context(),
        "sent_at": datetime(2025, 1, 2, 9, 30, tzinfo=UTC),
        "rows": [{"a": 1}, {"a": 2}, {"a": 3}],
    }
    source = (
        "{{ customer.tags }}|{{ customer.orders[0] }}|{{ sent_at.strftime('%d %b') }}|"
        "{{ customer.tags|map('upper')|join(',') }}|{{ customer.items()|list|length }}|"
        "{% for r in rows %}{{ cycler('odd', 'even').next() }}{{ loop.index }}{% endfor %}|"
        "{% set j = joiner(', ') %}{% for t in ['a', 'b'] %}{{ j() }}{{ t }}{% endfor %}|"
        "{% set ns = namespace(total=0) %}{% for r in rows %}{% set ns.total = ns.total + r.a %}{% endfor %}"
        "{{ ns.total }}|{{ range(3)|list }}|{{ '%.1f'|format(metrics.days_quiet) }}|{{ '{:>3}'.format(7) }}|"
        "{{ 'id: ' ~ customer.id ~ ' / ' ~ 3 }}|{{ rows|sum(attribute='a') }}|{{ {'k': [1, 2]} }}|{{ none }}"
    )
    assert renderer.render_string(source, context) == (
        "['vip']|{'sku': 'A-1', 'qty': 2}|02 Jan|VIP|4|odd1odd2odd3|a, b|6|[0, 1, 2]|12.0|  7|"
        "id: C1 / 3|6|{'k': [1, 2]}|None"
    )
