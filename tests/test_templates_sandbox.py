"""The template sandbox and variable rules as pure functions: escapes refused, limits hold, every failure a 400."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rhetor.errors import InvalidRequestError, TemplateRenderError, TemplateSyntaxInvalid
from rhetor.prompts.sandbox import compile_text, render
from rhetor.prompts.templates import bind, make_version, validate_id


def run(text: str, **variables: Any) -> str:
    return render(compile_text(text), variables)


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ x.__class__.__base__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__['__builtins__'] }}",
    "{{ self.__init__.__globals__ }}",
    "{{ x.pop() }}",
    "{{ x.append(1) }}",
    "{{ d.update({'a': 1}) }}",
    "{{ d.clear() }}",
    "{{ (x|attr('__class__')) }}",
    "{{ ''['__class__'] }}",
    "{{ 'a'.format.__globals__ }}",
    "{{ '{0.__class__}'.format(x) }}",
]


@pytest.mark.parametrize("text", ESCAPES)
def test_sandbox_escapes_are_refused(text: str) -> None:
    with pytest.raises(TemplateRenderError) as info:
        run(text, x=[1, 2], d={"k": "v"})
    assert info.value.status == 400
    assert info.value.type in ("template_sandbox_violation", "template_render_error")


@pytest.mark.parametrize("text", ["{% include 'x.txt' %}", "{% import 'x' as y %}", "{% from 'x' import y %}",
                                  "{% extends '/etc/passwd' %}"])
def test_no_file_access_tags(text: str) -> None:
    with pytest.raises(TemplateSyntaxInvalid, match="cannot read other files") as info:
        compile_text(text)
    assert info.value.status == 400 and info.value.param == "text"


AMPLIFIERS = [
    "{{ 'a' * 100000000 }}",
    "{{ [1] * 100000000 }}",
    "{{ 10 ** 100000000 }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ 'x'.ljust(999999999) }}",
    "{{ 'x'.zfill(999999999) }}",
    "{{ 'x'|center(999999999) }}",
    "{{ 'a\nb'|indent(999999999) }}",
    "{{ ('a' * 1000)|replace('a', 'b' * 100000) }}",
    "{{ ('a' * 1000).replace('a', 'b' * 100000) }}",
    "{% for i in range(100000000) %}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
    "{{ lipsum(n=1000000) }}",
]


@pytest.mark.parametrize("text", AMPLIFIERS)
def test_resource_amplifiers_are_bounded(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateRenderError) as info:
        run(text)
    assert info.value.status == 400
    assert time.perf_counter() - started < 5  # refused early, not after building the thing


@pytest.mark.parametrize(("text", "needle"), [
    ("{{ missing }}", "'missing' is undefined"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ("{{ x.nope.deeper }}", "has no attribute 'nope'"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "recursed too deeply"),
    ("{{ 'a' + 1 }}", "TypeError"),
])
def test_render_errors_are_400s(text: str, needle: str) -> None:
    with pytest.raises(TemplateRenderError, match=needle):
        run(text, x={"a": 1})


def test_syntax_error_says_where() -> None:
    with pytest.raises(TemplateSyntaxInvalid, match="line 2"):
        compile_text("fine\n{% if %}")


def test_ordinary_templates_render() -> None:
    text = ("{% for item in items %}- {{ item.name|upper }} ({{ '%.1f'|format(item.score) }})\n{% endfor %}"
            "{{ 'ok' if flag else 'no' }} {{ '{}-{}'.format(a, b) }} {{ range(3)|list }} {{ 'ab' * 3 }}")
    out = run(text, items=[{"name": "x", "score": 1.25}], flag=True, a=1, b=2)
    assert out == "- X (1.2)\nok 1-2 [0, 1, 2] ababab"


def test_loop_budget_is_per_render() -> None:
    tpl = compile_text("{% for i in range(10000) %}{% for j in range(9) %}{% endfor %}{% endfor %}done")
    for _ in range(3):  # 90k iterations each: the budget resets for every render
        assert render(tpl, {}) == "done"


def test_variables_bind_with_types_and_defaults() -> None:
    v = make_version("t.one", 1, text="{{ s }} {{ n }} {{ f }} {{ b }} {{ l }} {{ o }}", created_at="", source="user",
                     variables={"s": "string", "n": {"type": "integer", "default": 3}, "f": "number",
                                "b": {"type": "boolean", "default": False}, "l": "list", "o": "object"},
                     metadata={"task": "demo"})
    values = bind(v, {"s": "x", "f": 2, "l": [1], "o": {"k": 1}})
    assert values == {"s": "x", "n": 3, "f": 2, "b": False, "l": [1], "o": {"k": 1}}
    cases: list[tuple[dict[str, Any], str]] = [
                         ({"f": 1, "l": [], "o": {}}, "variables.s"),
                         ({"s": 1, "f": 1, "l": [], "o": {}}, "variables.s"),
                         ({"s": "x", "n": True, "f": 1, "l": [], "o": {}}, "variables.n"),
                         ({"s": "x", "n": 1.5, "f": 1, "l": [], "o": {}}, "variables.n"),
                         ({"s": "x", "f": "1", "l": [], "o": {}}, "variables.f"),
                         ({"s": "x", "f": 1, "l": {}, "o": {}}, "variables.l"),
                         ({"s": "x", "f": 1, "l": [], "o": [], }, "variables.o"),
                         ({"s": "x", "f": 1, "l": [], "o": {}, "typo": 1}, "variables.typo")]
    for given, param in cases:
        with pytest.raises(InvalidRequestError) as info:
            bind(v, given)
        assert info.value.param == param and info.value.status == 400


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"text": "{{ undeclared }}"}, "variables.undeclared"),
    ({"text": "x", "variables": {"n": {"type": "integer", "default": "three"}}}, "variables.n.default"),
    ({"text": "x", "variables": {"n": {"type": "int"}}}, "variables.n.type"),
    ({"text": "x", "variables": {"range": "string"}}, "variables.range"),
    ({"text": "x", "variables": {"_x": "string"}}, "variables._x"),
    ({"text": "x", "metadata": {"colour": "red"}}, "metadata.colour"),
    ({"text": "x", "metadata": {"use_as": "assistant"}}, "metadata.use_as"),
    ({"text": ""}, "text"),
])
def test_bad_versions_name_the_field(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        make_version("t.bad", 1, created_at="", source="user", variables=kwargs.pop("variables", None),
                     metadata=kwargs.pop("metadata", None), **kwargs)
    assert info.value.param == param


def test_system_templates_need_defaults() -> None:
    with pytest.raises(InvalidRequestError, match="needs a default"):
        make_version("system.ergon", 1, text="{{ mood }}", variables={"mood": "string"}, metadata=None,
                     created_at="", source="user")
    make_version("system.ergon", 1, text="{{ name }}", variables={"name": "string"}, metadata=None, created_at="",
                 source="user")


@pytest.mark.parametrize("bad", ["../etc/passwd", "A", "", "a/b", "a" * 129, ".hidden", "a b", "ä", None, 3])
def test_ids_are_validated(bad: Any) -> None:
    with pytest.raises(InvalidRequestError):
        validate_id(bad)
