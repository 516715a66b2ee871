"""The sandboxed template renderer: rendering, inspection, and all a template must not be able to do."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2 import FileSystemLoader, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.channels.templates import TemplateError, TemplateRenderer

SECRET = "TOP-SECRET-6f1c"

CUSTOMER: dict[str, Any] = {
    "customer": {
        "first_name": "Ann",
        "tier": "gold",
        "orders": [
            {"sku": "A-1", "qty": 2, "price": 9.5},
            {"sku": "B-7", "qty": 1, "price": 20.0},
        ],
        "address": {"city": "Lisbon"},
        "signed_up": date(2024, 3, 1),
    },
    "sent_at": datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
}

FILES = {
    "welcome.txt": (
        "Hi {{ customer.first_name }},\n"
        "{% for order in customer.orders %}\n"
        "- {{ order.sku }} x{{ order.qty }} = {{ '%.2f'|format(order.price * order.qty) }}\n"
        "{% endfor %}\n"
        "See you in {{ customer.address.city }} ({{ customer.signed_up.year }}).\n"
    ),
    "emails/promo.html": "<p>Hello {{ name }}</p>\n",
    "sms/promo.txt": "Hello {{ name }}\n",
    "vars.txt": (
        "{% set greeting = 'Hi' %}\n"  # 1
        "{{ greeting }} {{ customer.first_name }}\n"  # 2
        "{% for item in items %}{{ item }}{{ loop.index }}{% endfor %}\n"  # 3
        "{% macro row(label) %}{{ label }}: {{ currency }}{% endmacro %}\n"  # 4
        "{{ row('total') }} {{ total }}\n"  # 5
        "{{ customer.tier }} {{ range(2)|list }}\n"  # 6: customer again, range is a global
    ),
    "parts/footer.txt": "line one\nline two {{ footer_missing }}\n",
    "with_footer.txt": "top\n{% include 'parts/footer.txt' %}\n",
    "broken.txt": "ok\n{% if %}\n",
    "self_include.txt": "{% include 'self_include.txt' %}",
    "base.html": "<h1>{% block title %}Base{% endblock %}</h1>{% block body %}{% endblock %}",
    "child.html": (
        "{% extends 'base.html' %}{% block title %}{{ super() }} & {{ t }}{% endblock %}"
        "{% block body %}<p>{{ b }}</p>{% endblock %}"
    ),
    "macros.txt": (
        "{% macro hello(n) %}Hello {{ n }}{% if caller is defined %} {{ caller() }}{% endif %}{% endmacro %}"
    ),
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    templates = tmp_path / "templates"
    for name, text in FILES.items():
        path = templates / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    # Files just outside the root that a template must never read.
    (tmp_path / "pyproject.toml").write_text(f"secret = '{SECRET}'\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text(SECRET, encoding="utf-8")
    (templates / "escape_link.txt").symlink_to(tmp_path / "secret.txt")
    return templates


@pytest.fixture
def renderer(root: Path) -> TemplateRenderer:
    return TemplateRenderer(root)


# -- rendering -------------------------------------------------------------------------------------


def test_renders_nested_context(renderer: TemplateRenderer) -> None:
    assert renderer.render("welcome.txt", CUSTOMER) == (
        # Jinja's default: the file's final newline is not part of the output.
        "Hi Ann,\n- A-1 x2 = 19.00\n- B-7 x1 = 20.00\nSee you in Lisbon (2024)."
    )


def test_render_string_for_inline_templates(renderer: TemplateRenderer) -> None:
    subject = "{{ customer.first_name }}, {{ customer.orders|length }} items wait for you"
    assert renderer.render_string(subject, CUSTOMER) == "Ann, 2 items wait for you"
    assert renderer.render_string("{{ sent_at.strftime('%Y-%m-%d') }}", CUSTOMER) == "2025-01-02"
    # Compiled once and cached: a second render of the same source gives the same result.
    assert renderer.render_string(subject, CUSTOMER) == "Ann, 2 items wait for you"


@pytest.mark.parametrize("text", ["We miss you", "", "a %} b }}", "<b>&amp;</b>", "50% off\n", "a\r\nb"])
@pytest.mark.parametrize("name", ["subject", "title.html"])
def test_inline_text_without_tags_renders_as_jinja_renders_it(
    renderer: TemplateRenderer, text: str, name: str
) -> None:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    assert renderer.render_string(text, CUSTOMER, name=name) == env.from_string(text).render(CUSTOMER)
    with pytest.raises(TemplateError):  # the context is still checked
        renderer.render_string(text, {"customer": object()}, name=name)


def test_undefined_variable_is_an_error_naming_it(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError) as info:
        renderer.render_string("Hello\n{{ customer.nickname }}", CUSTOMER, name="subject")
    err = info.value
    assert err.kind == "undefined"
    assert "nickname" in err.message
    assert err.template == "subject" and err.line == 2

    with pytest.raises(TemplateError, match="'coupon' is undefined"):
        renderer.render_string("{{ coupon }}", CUSTOMER)


def test_error_in_included_template_names_that_template_and_line(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError) as info:
        renderer.render("with_footer.txt", {})
    assert info.value.kind == "undefined"
    assert info.value.template == "parts/footer.txt" and info.value.line == 2
    assert "footer_missing" in info.value.message


def test_syntax_error_has_its_line(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError) as info:
        renderer.render("broken.txt", {})
    assert info.value.kind == "syntax"
    assert info.value.template == "broken.txt" and info.value.line == 2
    with pytest.raises(TemplateError) as inline:
        renderer.render_string("a\nb\n{{ x }", {})
    assert inline.value.kind == "syntax" and inline.value.line == 3


def test_missing_template(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError) as info:
        renderer.render("nope.txt", {})
    assert info.value.kind == "not_found" and "nope.txt" in info.value.message


def test_html_templates_are_autoescaped_text_ones_are_not(renderer: TemplateRenderer) -> None:
    payload = {"name": "<script>alert(1)</script>"}
    assert renderer.render("emails/promo.html", payload) == (
        "<p>Hello &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    )
    assert renderer.render("sms/promo.txt", payload) == "Hello <script>alert(1)</script>"
    assert renderer.render_string("{{ name }}", payload) == "<script>alert(1)</script>"
    assert renderer.render_string("{{ name }}", payload, name="subject.html") == (
        "&lt;script&gt;alert(1)&lt;/script&gt;"
    )


def test_literal_html_in_html_templates_is_not_escaped(renderer: TemplateRenderer) -> None:
    # The guard the renderer puts around literal text must keep it markup.
    out = renderer.render_string(
        "<b>{{ n }}</b>{% for i in range(2) %}<i>{{ i }}</i>{% endfor %}", {"n": 1}, name="x.html"
    )
    assert out == "<b>1</b><i>0</i><i>1</i>"


def test_builtin_filters_and_loops_still_work(renderer: TemplateRenderer) -> None:
    source = (
        "{{ items|sort|join(', ') }}|{{ 'ab'|upper }}|{{ '{:>4}'.format('x') }}|{{ 'x'|center(5) }}|"
        "{% set ns = namespace(total=0) %}{% for i in items %}{% set ns.total = ns.total + i %}{% endfor %}"
        "{{ ns.total }}|{% for i in items %}{{ loop.index }}/{{ loop.length }}{% endfor %}|"
        "{{ items|map('string')|join('-') }}|{{ {'a': 1}|tojson }}|{{ 2 ** 10 }}|{{ 'ab' * 2 }}"
    )
    assert renderer.render_string(source, {"items": [3, 1, 2]}) == (
        '1, 2, 3|AB|   x|  x  |6|1/32/33/3|3-1-2|{"a": 1}|1024|abab'
    )


def test_template_features_survive_the_guards(renderer: TemplateRenderer) -> None:
    # The renderer rewrites every parsed template; inheritance, macros, call/filter blocks and recursive
    # loops must behave exactly as in plain Jinja.
    assert (
        renderer.render("child.html", {"t": "<T>", "b": "<B>"}) == "<h1>Base & &lt;T&gt;</h1><p>&lt;B&gt;</p>"
    )
    source = (
        "{% import 'macros.txt' as m %}{{ m.hello('x') }}|"
        "{% from 'macros.txt' import hello %}{% call hello('y') %}inner{% endcall %}|"
        "{% filter upper %}abc {{ v }}{% endfilter %}|{% with q = 3 %}{{ q }}{% endwith %}|"
        "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %}"
        "{% for z in [] %}{% else %}empty{% endfor %}|"
        "{% for x in tree recursive %}{{ x.n }}({{ loop(x.c) }}){% endfor %}"
    )
    tree = [{"n": "a", "c": [{"n": "b", "c": []}]}]
    assert (
        renderer.render_string(source, {"v": "def", "tree": tree})
        == "Hello x|Hello y inner|ABC DEF|3|37empty|a(b())"
    )


# -- inspection ------------------------------------------------------------------------------------


def test_variables_lists_undeclared_names_with_first_line(renderer: TemplateRenderer) -> None:
    assert renderer.variables("vars.txt") == [("customer", 2), ("items", 3), ("currency", 4), ("total", 5)]


def test_string_variables(renderer: TemplateRenderer) -> None:
    source = "{% for o in orders %}{{ o.sku }}{% endfor %}\n{% set x = 1 %}{{ x }}{{ name }}\n{{ orders }}"
    assert renderer.string_variables(source) == [("orders", 1), ("name", 2)]
    with pytest.raises(TemplateError) as info:
        renderer.string_variables("{% for %}")
    assert info.value.kind == "syntax"


def test_exists_and_source(renderer: TemplateRenderer) -> None:
    assert renderer.exists("sms/promo.txt")
    assert not renderer.exists("sms/nope.txt")
    assert not renderer.exists("../secret.txt")
    assert not renderer.exists("escape_link.txt")
    assert renderer.source("sms/promo.txt") == "Hello {{ name }}\n"
    with pytest.raises(TemplateError, match="leaves the template root"):
        renderer.source("../pyproject.toml")


# -- the context -----------------------------------------------------------------------------------


class Customer:
    def __init__(self) -> None:
        self.touched = False

    def __getattr__(self, name: str) -> Any:
        self.touched = True
        raise AttributeError(name)

    def __str__(self) -> str:
        self.touched = True
        return "customer"


@pytest.mark.parametrize(
    ("context", "path"),
    [
        ({"customer": lambda: 1}, "customer"),
        ({"customer": {"orders": [{"cb": print}]}}, "customer['orders'][0]['cb']"),
        ({"customer": {1, 2}}, "customer"),
        ({"customer": defaultdict(list)}, "customer"),
        ({"customer": b"bytes"}, "customer"),
    ],
)
def test_context_must_be_plain_data(renderer: TemplateRenderer, context: dict[str, Any], path: str) -> None:
    with pytest.raises(TemplateError) as info:
        renderer.render_string("{{ 1 }}", context)
    assert info.value.kind == "context"
    assert f"context value {path} is a " in info.value.message


def test_non_plain_object_is_refused_before_rendering(renderer: TemplateRenderer) -> None:
    customer = Customer()
    with pytest.raises(TemplateError, match="context value customer is a Customer, not plain data"):
        renderer.render_string("{{ customer }}{{ customer.name }}", {"customer": customer})
    assert not customer.touched  # the template never ran


def test_context_size_and_depth_are_bounded(root: Path) -> None:
    small = TemplateRenderer(root, max_output_chars=100, max_value_chars=1000)
    with pytest.raises(TemplateError, match="context is larger"):
        small.render_string("{{ 1 }}", {"blob": "x" * 2000})
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(TemplateError, match="nested deeper"):
        small.render_string("{{ 1 }}", {"deep": deep})


# -- the security suite ----------------------------------------------------------------------------

SECURITY_PAYLOADS = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "security", "unsafe"),
    ("{{ ().__class__.__bases__[0].__subclasses__() }}", "security", "unsafe"),
    ("{{ cycler.__init__.__globals__ }}", "security", "unsafe"),
    ("{{ self.__init__.__globals__ }}", "security", "unsafe"),
    ("{{ request }}", "undefined", "'request' is undefined"),
    ("{{ config }}", "undefined", "'config' is undefined"),
    ('{{ "{0.__class__}".format(customer) }}', "security", "unsafe"),
    ('{{ "{0.__class__.__init__.__globals__}".format(1) }}', "security", "unsafe"),
    ('{{ customer|attr("__class__") }}', "security", "unsafe"),
    ('{{ customer.update({"x": 1}) }}', "security", "unsafe"),
    ("{% set l = [] %}{{ l.append(1) }}", "security", "unsafe"),
    ("{{ 'x' * 20000000 }}", "limit", "the result of '*' would be larger than the limit"),
    ("{% for i in range(100000000) %}{% endfor %}", "limit", "range() of 100000000 items exceeds"),
    (
        "{% for a in range(9999) %}{% for b in range(9999) %}xxxxxxxxxx{% endfor %}{% endfor %}",
        "limit",
        "output is longer than the limit",
    ),
    ("{% include '/etc/passwd' %}", "security", "leaves the template root"),
    ("{% include '../pyproject.toml' %}", "security", "leaves the template root"),
    ("{% include 'escape_link.txt' %}", "security", "resolves outside the template root"),
    ("{% import 'os' as os %}", "not_found", "template 'os' not found"),
    ("{% from 'os' import system %}", "not_found", "template 'os' not found"),
    ("{{ lipsum(100000) }}", "undefined", "'lipsum' is undefined"),
]


@pytest.mark.parametrize(("source", "kind", "reason"), SECURITY_PAYLOADS)
def test_payload_is_refused(renderer: TemplateRenderer, source: str, kind: str, reason: str) -> None:
    context = {"customer": {"name": "Ann", "email": "ann@example.com"}}
    started = time.monotonic()
    with pytest.raises(TemplateError) as info:
        renderer.render_string(source, context)
    elapsed = time.monotonic() - started
    err = info.value
    assert err.kind == kind
    assert reason in err.message
    # No leak: nothing from outside the sandbox ends up in what the caller sees.
    for leaked in (SECRET, "<class", "subclasses", "function", "root:"):
        assert leaked not in str(err)
    # Every payload is stopped by a bound, well before the 2 s deadline.
    assert elapsed < 1.5
    assert context == {"customer": {"name": "Ann", "email": "ann@example.com"}}  # not mutated


def test_jinja_loader_itself_refuses_parent_paths(root: Path) -> None:
    # The renderer checks names before the loader sees them; the loader is a second line of defence.
    env = ImmutableSandboxedEnvironment(loader=FileSystemLoader(str(root)))
    with pytest.raises(TemplateNotFound):
        env.get_template("../pyproject.toml")


def test_render_refuses_names_leaving_the_root(renderer: TemplateRenderer) -> None:
    for name in ("../pyproject.toml", "/etc/passwd", "sms/../../secret.txt", "C:\\secret.txt"):
        with pytest.raises(TemplateError) as info:
            renderer.render(name, {})
        assert info.value.kind == "security", name
        assert SECRET not in str(info.value)
    with pytest.raises(TemplateError, match="resolves outside the template root"):
        renderer.render("escape_link.txt", {})


AMPLIFIERS = [
    # doubling through a namespace (a plain {% set %} in a loop is loop-local and cannot accumulate)
    "{% set ns = namespace(a='x' * 100000) %}{% for i in range(30) %}{% set ns.a = ns.a ~ ns.a %}"
    "{% endfor %}",
    "{% set ns = namespace(a=['x' * 1000]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
    "{% endfor %}",
    "{% set a = 'x' * 100000 %}{{ ''.join([a, a, a, a, a, a, a, a, a, a, a]) }}",
    "{% set a = 'x' * 100000 %}{{ [a] * 100 }}",
    "{{ ('x' * 100000)|replace('x', 'x' * 1000) }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'x'.ljust(1000000000) }}",
    "{{ 'x'|indent('y' * 1000000) }}",
    "{{ [1]|batch(1000000000, 0)|list }}",
    "{{ [1]|slice(1000000000)|list }}",
    "{{ 'ab'|wordwrap(1, true, 'z' * 1000000) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%*d' % (1000000000, 1) }}",
    "{{ '%(a)1000000000s'|format(a=1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{0:{1}}'.format('x', 1000000000) }}",
    "{{ 9 ** 999999999 }}",
    "{{ (1).to_bytes(1000000000, 'big') }}",
    "{{ [[1], [2]]|sum(start=[]) }}",
    # a buffered block: nothing is streamed, so only the printed-characters and iteration counts apply
    "{% set x %}{% for a in range(9999) %}{% for b in range(9999) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    "{% endset %}",
    "{% for a in 'x' * 5000 %}{% for b in 'x' * 5000 %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{% include 'self_include.txt' %}",
]


@pytest.mark.parametrize("source", AMPLIFIERS)
def test_resource_amplification_is_refused(renderer: TemplateRenderer, source: str) -> None:
    with pytest.raises(TemplateError) as info:
        renderer.render_string(source, {})
    assert info.value.kind in ("limit", "security")
    assert "took longer than" not in str(info.value)  # stopped by a bound, not by the render's deadline


def test_deadline_stops_a_slow_render(root: Path) -> None:
    slow = TemplateRenderer(root, max_iterations=10**12, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"took longer than 0\.2 s") as info:
        slow.render_string(
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", {}
        )
    assert info.value.kind == "limit"
    assert time.monotonic() - started < 2.0


def test_output_limit_is_configurable_and_per_render(root: Path) -> None:
    small = TemplateRenderer(root, max_output_chars=50, max_range=100)
    assert small.render_string("{{ 'x' * 50 }}", {}) == "x" * 50
    with pytest.raises(TemplateError, match="output is longer than the limit of 50"):
        small.render_string("{% for i in range(51) %}x{% endfor %}", {})
    with pytest.raises(TemplateError, match="exceeds the limit of 100"):
        small.render_string("{% for i in range(101) %}{% endfor %}", {})
    # A failed render leaves no budget behind: the next one starts fresh.
    assert small.render_string("{% for i in range(40) %}y{% endfor %}", {}) == "y" * 40


# -- prepared contexts -----------------------------------------------------------------------------


def test_prepared_context_is_checked_once_and_reused(root: Path, renderer: TemplateRenderer) -> None:
    prepared = renderer.prepare(CUSTOMER)
    assert renderer.render_string("{{ customer.first_name }}", prepared) == "Ann"
    assert renderer.render("welcome.txt", prepared) == renderer.render("welcome.txt", CUSTOMER)
    with pytest.raises(TemplateError) as info:
        renderer.prepare({"customer": {"cb": print}})
    assert info.value.kind == "context"
    assert "customer['cb'] is a builtin_function_or_method" in info.value.message
    # A context prepared under other limits is checked again by a stricter renderer.
    strict = TemplateRenderer(root, max_output_chars=10, max_value_chars=20)
    with pytest.raises(TemplateError, match="context is larger"):
        strict.render_string("{{ 1 }}", prepared)


def test_inspection_sees_the_template_as_written(renderer: TemplateRenderer) -> None:
    # parse() is Jinja's own, without the guards the renderer compiles in: variables are the author's.
    assert renderer.string_variables("{{ a ~ b }}{% for x in c %}{{ x }}{% endfor %}") == [
        ("a", 1),
        ("b", 1),
        ("c", 1),
    ]
