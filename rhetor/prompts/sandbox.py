"""The template sandbox: Jinja2's `ImmutableSandboxedEnvironment` with no loader, `StrictUndefined` and limits.

What a template cannot do:
- reach Python internals (`__class__`, `mro`, function globals, frames …): the Jinja sandbox refuses them;
- change the objects it was given (`list.append`, `dict.update` …): the immutable sandbox refuses them;
- read files or the network: there is no loader, and `include`, `import`, `from` and `extends` are refused
  when the text is compiled;
- exhaust the process: ranges, loop iterations, output size, string/list repetition, powers and format
  widths are bounded per render (the known amplifiers; each limit is a constant below).
Every failure is a `TemplateSyntaxInvalid` (compile) or `TemplateRenderError` (render), both 400s.
Knows nothing of storage, HTTP or the gateway.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rhetor.errors import TemplateRenderError, TemplateSyntaxInvalid

MAX_TEMPLATE_CHARS = 100_000  # the source text
MAX_OUTPUT_CHARS = 1_000_000  # one render's output
MAX_SEQUENCE = 1_000_000  # a string or list built by `*`
MAX_WIDTH = 10_000  # format widths, padding, centring, indentation
MAX_RANGE = 10_000  # one range()
MAX_LOOP_ITERATIONS = 100_000  # all for-loop iterations of one render, together
MAX_POW_BITS = 10_000  # size of an integer built by `**`

_FORBIDDEN_TAGS = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from … import",
                   nodes.Extends: "extends"}
_PADDING_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d+|\*)?(?:\.(\d+|\*))?")
_loop_count: ContextVar[list[int] | None] = ContextVar("rhetor_template_loops", default=None)


def _refuse(message: str) -> SecurityError:
    return SecurityError(message)


def _check_width(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_WIDTH:
        raise _refuse(f"{what} {value} exceeds the limit of {MAX_WIDTH}")


def _check_format_string(fmt: str, args: Iterable[Any]) -> None:
    """Refuse `%`/`format` specs whose width or precision would build a huge string."""
    nested = False
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if spec:
            nested = nested or "{" in spec
            for digits in re.findall(r"\d+", spec):
                _check_width(int(digits), "format width")
    for m in _PERCENT_SPEC.finditer(fmt):
        for part in m.groups():
            if part == "*":
                nested = True
            elif part:
                _check_width(int(part), "format width")
    if nested:
        for arg in args:
            _check_width(arg, "format width")


def _safe_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise _refuse(f"range() of {len(rng)} items exceeds the limit of {MAX_RANGE}")
    return rng


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    counter = _loop_count.get()
    for item in iterable:
        if counter is not None:
            counter[0] += 1
            if counter[0] > MAX_LOOP_ITERATIONS:
                raise _refuse(f"the template ran more than {MAX_LOOP_ITERATIONS} loop iterations")
        yield item


def _check_replace(s: Any, old: Any, new: Any) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        grown = len(s) + (s.count(old) if old else len(s) + 1) * (len(new) - len(old))
        if grown > MAX_OUTPUT_CHARS:
            raise _refuse(f"replace() would build {grown} characters; the limit is {MAX_OUTPUT_CHARS}")


def _guard_filter(func: Any, *positions: int, replace: bool = False) -> Any:
    """Wrap a built-in filter so its width-like arguments (by position) or its growth are bounded."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        for pos in positions:
            if pos < len(args):
                _check_width(args[pos], "filter width")
        for key in ("width", "indent"):
            _check_width(kwargs.get(key), "filter width")
        if replace and len(args) >= 4:  # (eval_ctx, s, old, new[, count])
            _check_replace(args[1], args[2], args[3])
        return func(*args, **kwargs)

    for attr in ("jinja_pass_arg",):  # keep @pass_environment / @pass_eval_context markers
        if hasattr(func, attr):
            setattr(guarded, attr, getattr(func, attr))
    return guarded


class PromptSandbox(ImmutableSandboxedEnvironment):
    """The one environment every template compiles in. Stateless after construction; safe to share."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(loader=None, undefined=StrictUndefined, autoescape=False, trim_blocks=True,
                         lstrip_blocks=True, keep_trailing_newline=False, auto_reload=False, cache_size=0)
        self.globals.pop("lipsum", None)
        self.globals["range"] = _safe_range
        self.loop_guard = _loop_guard
        self.filters["center"] = _guard_filter(self.filters["center"], 1)
        self.filters["indent"] = _guard_filter(self.filters["indent"], 1)
        self.filters["wordwrap"] = _guard_filter(self.filters["wordwrap"], 1)
        self.filters["replace"] = _guard_filter(self.filters["replace"], replace=True)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for kind, tag in _FORBIDDEN_TAGS.items():
            for node in tree.find_all(kind):
                raise TemplateSyntaxError(f"'{tag}' is not available: templates cannot read other files",
                                          node.lineno, name, filename)
        for loop in tree.find_all(nodes.For):
            # Every for-loop iterates through the per-render budget; templates cannot name this attribute.
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("loop_guard"), [loop.iter], [], None, None,
                                   lineno=loop.lineno)
        return tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                        and len(seq) * max(times, 0) > MAX_SEQUENCE:
                    raise _refuse(f"repetition would build {len(seq) * times} items; the limit is {MAX_SEQUENCE}")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and max(left.bit_length(), 1) * right > MAX_POW_BITS:
                raise _refuse(f"the power would exceed {MAX_POW_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left, right if isinstance(right, tuple) else (right,))
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> Any:
            _check_format_string(fmt, [*args, *kwargs.values()])
            return wrapped(*args, **kwargs)

        return checked

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        method, owner = getattr(__obj, "__name__", None), getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            if method in _PADDING_METHODS:
                for arg in (*args, *kwargs.values()):
                    _check_width(arg, f"{method}() width")
            elif method == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_OUTPUT_CHARS:
            raise _refuse(f"a call built a string of {len(result)} characters; the limit is {MAX_OUTPUT_CHARS}")
        return result


SANDBOX = PromptSandbox()


def compile_text(text: str, *, name: str = "template") -> Template:
    """Compile template text, or raise TemplateSyntaxInvalid (400) saying where and why."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateSyntaxInvalid(f"template text has {len(text)} characters; the limit is {MAX_TEMPLATE_CHARS}")
    try:
        return SANDBOX.from_string(text)
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxInvalid(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    except (TemplateError, RecursionError, MemoryError, ValueError) as exc:
        raise TemplateSyntaxInvalid(f"template cannot be compiled: {exc}") from None


def referenced_names(text: str) -> set[str]:
    """Names the text reads from its variables (not the sandbox's globals)."""
    from jinja2 import meta

    try:
        tree = SANDBOX.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxInvalid(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    return set(meta.find_undeclared_variables(tree)) - set(SANDBOX.globals)


def render(template: Template, variables: Mapping[str, Any], *, name: str = "template") -> str:
    """Render with the per-render limits; every failure is a TemplateRenderError (400), never a 500."""
    token = _loop_count.set([0])
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(dict(variables)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise _refuse(f"the output exceeds {MAX_OUTPUT_CHARS} characters")
            parts.append(chunk)
        return "".join(parts)
    except SecurityError as exc:
        raise TemplateRenderError(f"template {name!r} was refused by the sandbox: {exc}",
                                  error_type="template_sandbox_violation") from None
    except TemplateError as exc:
        raise TemplateRenderError(f"template {name!r} could not be rendered: {exc.message or exc}") from None
    except RecursionError:
        raise TemplateRenderError(f"template {name!r} recursed too deeply") from None
    except MemoryError:
        raise TemplateRenderError(f"template {name!r} ran out of memory") from None
    except Exception as exc:  # ZeroDivisionError, TypeError, ValueError …: the template's fault, not ours
        raise TemplateRenderError(f"template {name!r} could not be rendered: {type(exc).__name__}: {exc}") from None
    finally:
        _loop_count.reset(token)


__all__ = ["MAX_LOOP_ITERATIONS", "MAX_OUTPUT_CHARS", "PromptSandbox", "compile_text", "referenced_names", "render"]
