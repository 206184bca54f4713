"""The template sandbox: Jinja2's `ImmutableSandboxedEnvironment` with no loader, `StrictUndefined` and limits.

What a template cannot do:
- reach Python internals (`__class__`, `mro`, function globals, frames …): the Jinja sandbox refuses them;
- change the objects it was given (`list.append`, `dict.update` …): the immutable sandbox refuses them;
- read files or the network: there is no loader, and `include`, `import`, `from` and `extends` are refused
  when the text is compiled;
- exhaust the process: every intermediate value (the result of each binop, `~`, filter and call) is bounded in
  size, not only the output; ranges, loop iterations, macro/loop recursion depth, powers and format widths
  are bounded; every intercepted operation checks the render's wall-clock deadline (each limit is a constant
  below). No constant is folded at compile time, so compiling never evaluates template code.
This is the cooperative layer; the hard one (a killable worker process with a memory limit) is
rhetor.prompts.pool, which is where untrusted text is rendered.
Every failure is a `TemplateSyntaxInvalid` (compile) or `TemplateRenderError` (render), both 400s.
Knows nothing of storage, HTTP, processes or the gateway.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes, pass_environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rhetor.errors import TemplateRenderError, TemplateSyntaxInvalid

MAX_TEMPLATE_CHARS = 100_000  # the source text
MAX_OUTPUT_CHARS = 1_000_000  # one render's output
MAX_SEQUENCE = 1_000_000  # any intermediate string, list, tuple, dict or set (items or characters)
MAX_WIDTH = 10_000  # format widths, padding, centring, indentation
MAX_RANGE = 10_000  # one range()
MAX_LOOP_ITERATIONS = 100_000  # all for-loop iterations of one render, together
MAX_POW_BITS = 10_000  # size of an integer built by `**`
MAX_DEPTH = 100  # nested macro calls / recursive loop calls (Python's own limit would be a RecursionError)
_SIZED = (str, list, tuple, dict, set, frozenset)

_FORBIDDEN_TAGS = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from … import",
                   nodes.Extends: "extends"}
_PADDING_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d+|\*)?(?:\.(\d+|\*))?")


@dataclass(slots=True)
class _Budget:
    """One render's running totals; `deadline` is a time.monotonic() value (None: no time limit)."""

    deadline: float | None
    timeout_s: float | None
    loops: int = 0
    depth: int = 0


_budget: ContextVar[_Budget | None] = ContextVar("rhetor_template_budget", default=None)


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


def _tick() -> None:
    """The cooperative wall-clock check every intercepted operation makes (a monotonic read, ~50 ns)."""
    budget = _budget.get()
    if budget is not None and budget.deadline is not None and time.monotonic() > budget.deadline:
        raise _refuse(f"the render exceeded the time limit of {budget.timeout_s:g} s (RHETOR_TEMPLATE_TIMEOUT_S)")


def _check_size(value: Any, what: str) -> Any:
    if isinstance(value, _SIZED) and len(value) > MAX_SEQUENCE:
        raise _refuse(f"{what} built a value of {len(value)} items; the limit is {MAX_SEQUENCE}")
    return value


def _safe_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise _refuse(f"range() of {len(rng)} items exceeds the limit of {MAX_RANGE}")
    return rng


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget.get()
    for item in iterable:
        if budget is not None:
            budget.loops += 1
            if budget.loops > MAX_LOOP_ITERATIONS:
                raise _refuse(f"the template ran more than {MAX_LOOP_ITERATIONS} loop iterations")
            _tick()
        yield item


def _text_size(value: Any, limit: int = MAX_SEQUENCE) -> int:
    """An upper-bound estimate of len(str(value)), walking containers without building the string."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        total = 2
        for item in value:
            total += _text_size(item, limit) + 4
            if total > limit:
                break
        return total
    return 32


def _concat_guard(parts: tuple[Any, ...]) -> str:
    """`a ~ b ~ …`: the joined size is checked before the string is built."""
    _tick()
    total = sum(_text_size(p) for p in parts)
    if total > MAX_SEQUENCE:
        raise _refuse(f"'~' would build a string of {total} characters; the limit is {MAX_SEQUENCE}")
    return "".join(p if isinstance(p, str) else str(p) for p in parts)


def _finalize(value: Any) -> Any:
    """Every `{{ … }}` is turned into text: a container's text is bounded before it is built."""
    if not isinstance(value, str) and _text_size(value) > MAX_SEQUENCE:
        raise _refuse(f"printing a value would build more than the limit of {MAX_SEQUENCE} characters")
    return value


@pass_environment
def _sum_filter(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    """`|sum` without the quadratic `list + list` of builtins.sum: numbers add, sequences are chained."""
    items = list(iterable)
    if attribute is not None:
        getter = make_attrgetter(environment, attribute)
        items = [getter(x) for x in items]
    if isinstance(start, str):
        raise _refuse("sum() of strings is not available; use join")
    if isinstance(start, (list, tuple)):
        size = len(start) + sum(len(x) for x in items if isinstance(x, _SIZED))
        if size > MAX_SEQUENCE:
            raise _refuse(f"sum() would build {size} items; the limit is {MAX_SEQUENCE}")
        out: list[Any] = list(start)
        for x in items:
            out.extend(x)
        return tuple(out) if isinstance(start, tuple) else out
    return sum(items, start)


def _check_replace(s: Any, old: Any, new: Any) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        grown = len(s) + (s.count(old) if old else len(s) + 1) * (len(new) - len(old))
        if grown > MAX_OUTPUT_CHARS:
            raise _refuse(f"replace() would build {grown} characters; the limit is {MAX_OUTPUT_CHARS}")


def _guard_filter(func: Any, *positions: int, replace: bool = False, name: str = "filter") -> Any:
    """Wrap a built-in filter: the deadline, its width-like arguments (by position), its growth and the size of
    what it returns are bounded."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        for pos in positions:
            if pos < len(args):
                _check_width(args[pos], "filter width")
        for key in ("width", "indent", "linecount", "slices"):
            _check_width(kwargs.get(key), "filter width")
        if replace and len(args) >= 4:  # (eval_ctx, s, old, new[, count])
            _check_replace(args[1], args[2], args[3])
        if name == "format" and args and isinstance(args[0], str):
            _check_format_string(args[0], [*args[1:], *kwargs.values()])
        if name == "join" and len(args) >= 2:  # (eval_ctx, value, d="", attribute=None)
            items = list(args[1])
            sep = args[2] if len(args) > 2 else kwargs.get("d", "")
            total = sum(_text_size(x) for x in items) + _text_size(sep) * len(items)
            if total > MAX_SEQUENCE:
                raise _refuse(f"join would build {total} characters; the limit is {MAX_SEQUENCE}")
            args = (args[0], items, *args[2:])
        return _check_size(func(*args, **kwargs), f"the {name} filter")

    for attr in ("jinja_pass_arg",):  # keep @pass_environment / @pass_eval_context markers
        if hasattr(func, attr):
            setattr(guarded, attr, getattr(func, attr))
    return guarded


class _GuardedCodeGenerator(CodeGenerator):
    """`~` goes through the environment's size check instead of a bare str_join."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_guard((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class PromptSandbox(ImmutableSandboxedEnvironment):
    """The one environment every template compiles in. Stateless after construction; safe to share."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = _GuardedCodeGenerator

    def __init__(self) -> None:
        # optimized=False: the optimizer would evaluate constant expressions (filters included) at compile time,
        # in whichever process compiles — the server itself when a template is written.
        super().__init__(loader=None, undefined=StrictUndefined, autoescape=False, trim_blocks=True,
                         lstrip_blocks=True, keep_trailing_newline=False, auto_reload=False, cache_size=0,
                         optimized=False, finalize=_finalize)
        self.globals.pop("lipsum", None)
        self.globals["range"] = _safe_range
        self.loop_guard = _loop_guard
        self.concat_guard = _concat_guard
        self.filters["sum"] = _sum_filter
        # positions of width-like arguments: center(value, width), indent(s, width), wordwrap(env, s, width),
        # batch(value, linecount, fill), slice(value, slices, fill)
        widths = {"center": (1,), "indent": (1,), "wordwrap": (2,), "batch": (1,), "slice": (1,)}
        for fname, func in list(self.filters.items()):
            self.filters[fname] = _guard_filter(func, *widths.get(fname, ()), replace=fname == "replace",
                                                name=fname)

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
        _tick()
        if operator == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED) \
                and len(left) + len(right) > MAX_SEQUENCE:
            raise _refuse(f"'+' would build {len(left) + len(right)} items; the limit is {MAX_SEQUENCE}")
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
        return _check_size(super().call_binop(context, operator, left, right), f"'{operator}'")

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> Any:
            _check_format_string(fmt, [*args, *kwargs.values()])
            return wrapped(*args, **kwargs)

        return checked

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        if isinstance(__obj, (Macro, LoopContext)):
            return __self._nested_call(__context, __obj, *args, **kwargs)
        method, owner = getattr(__obj, "__name__", None), getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            if method in _PADDING_METHODS:
                for arg in (*args, *kwargs.values()):
                    _check_width(arg, f"{method}() width")
            elif method == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
        return _check_size(super().call(__context, __obj, *args, **kwargs), "a call")

    def _nested_call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A macro (or a recursive loop) call: the nesting depth is bounded before Python's stack is."""
        budget = _budget.get()
        if budget is None:
            return _check_size(super().call(__context, __obj, *args, **kwargs), "a macro call")
        if budget.depth >= MAX_DEPTH:
            raise _refuse(f"the template recursed too deeply: macro calls nest more than {MAX_DEPTH} levels "
                          "(the recursion limit)")
        budget.depth += 1
        try:
            return _check_size(super().call(__context, __obj, *args, **kwargs), "a macro call")
        finally:
            budget.depth -= 1


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


def render(template: Template, variables: Mapping[str, Any], *, name: str = "template",
           timeout_s: float | None = None, memory_mb: int | None = None) -> str:
    """Render with the per-render limits (and, given `timeout_s`, a cooperative deadline); every failure is a
    TemplateRenderError (400), never a 500. `memory_mb` only names the budget a MemoryError ran into."""
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    token = _budget.set(_Budget(deadline, timeout_s))
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
        raise TemplateRenderError(f"template {name!r} recursed too deeply (the recursion limit)",
                                  error_type="template_sandbox_violation") from None
    except MemoryError:
        limit = f"the memory limit of {memory_mb} MB (RHETOR_TEMPLATE_MEMORY_MB)" if memory_mb else "the memory limit"
        raise TemplateRenderError(f"template {name!r} was stopped by the sandbox: it exceeded {limit}",
                                  error_type="template_sandbox_violation") from None
    except Exception as exc:  # ZeroDivisionError, TypeError, ValueError …: the template's fault, not ours
        raise TemplateRenderError(f"template {name!r} could not be rendered: {type(exc).__name__}: {exc}") from None
    finally:
        _budget.reset(token)


__all__ = ["MAX_DEPTH", "MAX_LOOP_ITERATIONS", "MAX_OUTPUT_CHARS", "MAX_SEQUENCE", "PromptSandbox", "compile_text",
           "referenced_names", "render"]
