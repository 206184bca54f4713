"""The template render worker: a child process that renders untrusted template text under hard limits.

Started by rhetor.prompts.pool as `python -m rhetor.prompts.worker <memory_mb> <timeout_s>`. It lowers its own
priority, caps its address space at what it maps after start-up plus `memory_mb` (RLIMIT_AS, so a hostile
render gets a MemoryError instead of the machine's memory), says it is ready, then answers one request at a
time. Frames on stdin/stdout are a 4-byte big-endian length and UTF-8 JSON:
request `{"text", "variables", "name"}` → reply `{"text"}` or `{"error": {"type", "message", "param"}}`,
plus `"exit": true` when it is about to quit (after a MemoryError its heap cannot be trusted).
The wall-clock budget is enforced twice: cooperatively here (rhetor.prompts.sandbox checks a deadline in every
intercepted operation) and by the parent, which kills this process if no reply comes in time.
Knows nothing of asyncio, HTTP, storage or the gateway.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
from typing import IO, Any

from jinja2.environment import Template

from rhetor.errors import InvalidRequestError
from rhetor.prompts.sandbox import compile_text, render

_HEADER = struct.Struct("!I")
_MAX_CACHED = 128  # compiled templates kept, keyed by text (versions are immutable, ids can be reused)


def _limit_memory(memory_mb: int) -> None:
    """RLIMIT_AS = what is mapped now + the budget: the budget is what one render may add."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # no /proc: a generous base
        mapped = 512 * 1024 * 1024
    limit = mapped + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    return json.loads(stream.read(size))


def _write(stream: IO[bytes], message: dict[str, Any]) -> None:
    payload = json.dumps(message, ensure_ascii=False, default=str).encode("utf-8")
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _answer(request: dict[str, Any], cache: dict[str, Template], memory_mb: int, timeout_s: float) -> dict[str, Any]:
    text, name = request["text"], request.get("name", "template")
    try:
        compiled = cache.get(text)
        if compiled is None:
            if len(cache) >= _MAX_CACHED:
                cache.clear()
            compiled = cache[text] = compile_text(text, name=name)
        return {"text": render(compiled, request.get("variables") or {}, name=name, timeout_s=timeout_s,
                               memory_mb=memory_mb)}
    except InvalidRequestError as exc:
        reply: dict[str, Any] = {"error": {"type": exc.type, "message": exc.message, "param": exc.param}}
        if isinstance(exc.__context__, MemoryError):
            reply["exit"] = True
        return reply
    except MemoryError:
        return {"error": {"type": "template_sandbox_violation", "param": "variables",
                          "message": f"template {name!r} was stopped by the sandbox: it exceeded the memory limit "
                                     f"of {memory_mb} MB (RHETOR_TEMPLATE_MEMORY_MB)"}, "exit": True}


def main(argv: list[str]) -> int:
    memory_mb, timeout_s = int(argv[0]), float(argv[1])
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing but frames may reach the parent's pipe
    inp = sys.stdin.buffer
    try:
        os.nice(5)  # the server's own process wins the CPU when both want it
    except OSError:
        pass
    _limit_memory(memory_mb)
    cache: dict[str, Template] = {}
    _write(out, {"ready": True})
    while True:
        request = _read(inp)
        if request is None:  # the parent closed the pipe (or died): nothing more to do
            return 0
        reply = _answer(request, cache, memory_mb, timeout_s)
        _write(out, reply)
        if reply.get("exit"):
            return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
