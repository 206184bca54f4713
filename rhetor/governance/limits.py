"""Rate limits: requests-per-minute and tokens-per-minute per subject (a caller key, or a component), checked at
admission, behind the small `RateLimiter` protocol so a shared backend (Redis) can replace the in-process one
when several instances serve together.

The in-process limiter keeps, per subject, a sliding window of 60 one-second buckets for requests and for tokens
(constant memory, O(1) per call). Requests count when admitted. Tokens are known only when a request ends, so
admission reserves an estimate (the caller passes one, e.g. from the body's size), the reservation is released
when the request ends, and the real usage (input + output, from the usage records) is added then: concurrent
requests cannot run past a TPM limit by more than the requests already admitted. Verdicts carry OpenAI's
`x-ratelimit-*` headers as (name, value) pairs and, when refused, the seconds until a slot frees; the hot path's
`take` answers an admitted request's pairs alone, `take_lines` them as one block of header lines (the same bytes
on the wire).
Knows the headers' names and text; nothing of servers, routes or keys.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

WINDOW: Final = 60
# Module constants are Final: rhetor.native's build reads them as C statics, not through the module's dict (~130
# instructions a name a call, callgrind)


def duration(seconds: float) -> str:
    """OpenAI's reset format: `20ms`, `7s`, `1m0s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    return f"{whole}s" if whole < 60 else f"{whole // 60}m{whole % 60}s"


class Window:
    """Counts over the last 60 seconds in one-second buckets; `last` is the latest second counted in (-1: none)."""

    __slots__ = ("counts", "last", "second", "total")

    def __init__(self) -> None:
        self.counts = [0] * WINDOW
        self.second = 0
        self.total = 0
        self.last = -1

    def advance(self, now_s: int) -> None:
        gap = now_s - self.second
        if gap <= 0:
            return
        if gap >= WINDOW:
            self.counts, self.total = [0] * WINDOW, 0
        else:
            for s in range(self.second + 1, now_s + 1):
                i = s % WINDOW
                self.total -= self.counts[i]
                self.counts[i] = 0
        self.second = now_s

    def add(self, n: int) -> None:
        self.counts[self.second % WINDOW] += n
        self.total += n
        if n > 0:
            self.last = self.second

    def frees_in(self, now: float) -> float:
        """Seconds until the oldest counted second leaves the window (something frees up)."""
        for s in range(self.second - WINDOW + 1, self.second + 1):
            if self.counts[s % WINDOW]:
                return s + WINDOW - now
        return 0.0

    def empties_in(self, now: float) -> float:
        """Seconds until everything counted has left the window (the limit is back to its initial state)."""
        last = self.last  # buckets only grow until they leave the window: the latest one counted is the newest
        return last + WINDOW - now if last > self.second - WINDOW else 0.0

    def reset(self, now: float) -> bytes:
        """`duration(empties_in(now))`, encoded (`x-ratelimit-reset-*`), after `advance(int(now))`."""
        gap = self.last + WINDOW - self.second  # whole seconds until the newest counted second leaves
        # empties_in is in (gap - 1, gap]: from 2 s up its ceiling is gap, so the text comes from a table
        return _RESET[gap] if gap >= 2 else duration(self.empties_in(now)).encode()


@dataclass(slots=True)
class Verdict:
    allowed: bool
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    exceeded: str | None = None  # "requests" or "tokens" when refused
    limit: int = 0
    retry_after: float = 0.0  # seconds, when refused
    reserved: int = 0  # tokens reserved by this admission; give them back with release()

    def message(self, who: str) -> str:
        unit = "requests" if self.exceeded == "requests" else "tokens"
        return (f"rate limit exceeded for {who}: {self.limit} {unit} per minute; "
                f"retry after {math.ceil(self.retry_after)}s")


class RateLimiter(Protocol):
    async def admit(self, subject: str, rpm: int | None, tpm: int | None, tokens: int) -> Verdict: ...

    def release(self, subject: str, reserved: int) -> None: ...

    def consume(self, subject: str, tokens: int) -> None: ...


class _Subject:
    __slots__ = ("block_rpm", "block_tpm", "head", "mid", "requests", "reserved", "tokens")

    def __init__(self) -> None:
        self.requests, self.tokens, self.reserved = Window(), Window(), 0
        # `take_lines`' fixed parts, the limits' digits already in them (`_parts`), for the limits they were made
        # for (-1: not made yet)
        self.head, self.mid = b"", b""
        self.block_rpm: int | None = -1
        self.block_tpm: int | None = -1


class InProcessLimiter:
    """The embedded RateLimiter: exact for one process; each process of `--workers N` counts its own."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._subjects: dict[str, _Subject] = {}
        self._clock = clock

    def _subject(self, subject: str, now_s: int) -> _Subject:
        found = self._subjects.get(subject)
        if found is None:
            found = self._subjects[subject] = _Subject()
        if found.requests.second != now_s:  # both windows move together: one check per call within a second
            found.requests.advance(now_s)
            found.tokens.advance(now_s)
        return found

    async def admit(self, subject: str, rpm: int | None, tpm: int | None, tokens: int) -> Verdict:
        return self.check(subject, rpm, tpm, tokens)

    def check(self, subject: str, rpm: int | None, tpm: int | None, tokens: int) -> Verdict:
        now = self._clock()
        now_s = int(now)
        s = self._subjects.get(subject)
        if s is None or s.requests.second != now_s:
            s = self._subject(subject, now_s)
        headers = _admit(s, now, now_s, rpm, tpm, tokens)
        if headers is not None:
            return Verdict(True, headers, None, 0, 0.0, 0 if tpm is None else tokens)
        requests = s.requests
        if rpm is not None and requests.total >= rpm:
            return self._refused(s, "requests", rpm, tpm, requests.frees_in(now), now)
        wait = s.tokens.frees_in(now) or 1.0  # only reservations in the way: they end soon
        return self._refused(s, "tokens", rpm, tpm, wait, now)

    def take(self, subject: str, rpm: int | None, tpm: int | None, tokens: int) -> list[tuple[bytes, bytes]] | None:
        """`check` without its Verdict: an admitted request's headers (`tokens` reserved when there is a TPM
        limit), or None when refused, having counted nothing (`check` then says why): `take_lines`' block as
        (name, value) pairs, for a server that does not write header lines as they are (rhetor.api.header_lines).
        A Verdict and its Admission would cost ~5k instructions a request (benchmarks/instructions.py)."""
        block = self.take_lines(subject, rpm, tpm, tokens)
        if block is None:
            return None
        return [(name, value) for name, _, value in (line.partition(b": ") for line in block.split(b"\r\n")[1:])]

    def take_lines(self, subject: str, rpm: int | None, tpm: int | None, tokens: int) -> bytes | None:
        """`take` with the headers as one block of header lines (each a CRLF, then `name: value`): the same
        headers, order and text as `take`'s and `check`'s pairs, written by the server as they are when it offers
        rhetor.api.header_lines' extension, where six pairs each cost it a look-up, a check and a copy. The
        admission is the one `take` answers too (tests/test_header_lines.py checks both); the block is the two
        counts between cached parts: the limits' digits (`_parts`), the requests' reset (a minute: the request
        just counted is the newest), the tokens' (the table's whole seconds) (benchmarks/README.md, round 9)."""
        now = self._clock()
        now_s = int(now)
        s = self._subjects.get(subject)
        if s is None or s.requests.second != now_s:
            s = self._subject(subject, now_s)
        requests = s.requests
        if rpm is not None and requests.total >= rpm:
            return None
        w = s.tokens
        if tpm is not None:
            used = w.total + s.reserved
            if used > 0 and used + tokens > tpm:
                return None
            reserved = s.reserved = s.reserved + tokens
        requests.counts[now_s % WINDOW] += 1  # Window.add(1), inlined
        total = requests.total = requests.total + 1
        requests.last = now_s
        if s.block_rpm != rpm or s.block_tpm != tpm:  # the limits' digits formatted once, not per request (~1k)
            _parts(s, rpm, tpm)
        # Concatenated, not a bytes %-format of a block, which parses the block's ~200 bytes each time: ~0.2k
        # instructions a call less (governance_micro.py take_lines, 5.01k -> 4.83k; most of what is left is the
        # two counts' conversion to decimal)
        if tpm is None:
            return b"" if rpm is None else s.head + str(rpm - total).encode() + s.mid
        left, gap = tpm - w.total - reserved, w.last + WINDOW - now_s
        tail = _RESET_TOKEN_LINES[gap] if gap >= 2 else _RESET_TOKEN_NAME + w.reset(now)
        if rpm is None:
            return s.head + str(left if left > 0 else 0).encode() + tail
        return s.head + str(rpm - total).encode() + s.mid + str(left if left > 0 else 0).encode() + tail

    def _refused(self, s: _Subject, kind: str, rpm: int | None, tpm: int | None, wait: float,
                 now: float) -> Verdict:
        wait = max(wait, 0.001)
        limit = rpm if kind == "requests" else tpm
        assert limit is not None
        headers = _headers(s, rpm, tpm, now)
        headers.append((b"retry-after", str(math.ceil(wait)).encode()))
        headers.append((b"retry-after-ms", str(math.ceil(wait * 1000)).encode()))
        return Verdict(False, headers, kind, limit, wait)

    def release(self, subject: str, reserved: int) -> None:
        if reserved:
            s = self._subjects.get(subject)
            if s is not None:
                s.reserved = max(0, s.reserved - reserved)

    def consume(self, subject: str, tokens: int) -> None:
        if tokens > 0:
            now_s = int(self._clock())
            s = self._subjects.get(subject)
            if s is None or s.requests.second != now_s:
                s = self._subject(subject, now_s)
            w = s.tokens  # Window.add(tokens), inlined
            w.counts[now_s % WINDOW] += tokens
            w.total += tokens
            w.last = now_s


def _admit(s: _Subject, now: float, now_s: int, rpm: int | None, tpm: int | None,
           tokens: int) -> list[tuple[bytes, bytes]] | None:
    """Count one request in (reserving `tokens` under a TPM limit) and answer its headers; None if over a limit
    (nothing counted). `s` is advanced to `now_s`."""
    requests = s.requests
    if rpm is not None and requests.total >= rpm:
        return None
    if tpm is not None:
        used = s.tokens.total + s.reserved
        if used > 0 and used + tokens > tpm:
            return None
        s.reserved += tokens
    # Window.add(1), inlined (the hot path: one admitted request)
    requests.counts[now_s % WINDOW] += 1
    requests.total += 1
    requests.last = now_s
    return _headers(s, rpm, tpm, now)


def _headers(s: _Subject, rpm: int | None, tpm: int | None, now: float) -> list[tuple[bytes, bytes]]:
    # Built for every admitted request of a limited key: the limit and reset headers are tuples made once (per
    # limit value; per whole second to reset), only the two remaining counts are formatted, with b"%d" (~1.1k
    # instructions, where str().encode() costs ~1.8k); Window.reset inlined (callgrind, instructions.py --bench-key)
    out: list[tuple[bytes, bytes]] = []
    if rpm is not None:
        w = s.requests
        gap = w.last + WINDOW - w.second
        remaining = rpm - w.total
        out += [_LIMIT_REQUESTS.get(rpm) or _limit(_LIMIT_REQUESTS, b"x-ratelimit-limit-requests", rpm),
                (b"x-ratelimit-remaining-requests", b"%d" % remaining if remaining > 0 else b"0"),
                _RESET_REQUESTS[gap] if gap >= 2 else (b"x-ratelimit-reset-requests", w.reset(now))]
    if tpm is not None:
        w = s.tokens
        gap = w.last + WINDOW - w.second
        remaining = tpm - w.total - s.reserved
        out += [_LIMIT_TOKENS.get(tpm) or _limit(_LIMIT_TOKENS, b"x-ratelimit-limit-tokens", tpm),
                (b"x-ratelimit-remaining-tokens", b"%d" % remaining if remaining > 0 else b"0"),
                _RESET_TOKENS[gap] if gap >= 2 else (b"x-ratelimit-reset-tokens", w.reset(now))]
    return out


def _limit(made: dict[int, tuple[bytes, bytes]], name: bytes, limit: int) -> tuple[bytes, bytes]:
    if len(made) >= 1024:  # bounded: limits are set per key and component, few distinct values
        made.clear()
    header = made[limit] = (name, b"%d" % limit)
    return header


def _parts(s: _Subject, rpm: int | None, tpm: int | None) -> None:
    """`take_lines`' fixed parts for these limits: the requests' (or, without an RPM limit, the tokens') limit line
    and the name of the remaining count (`head`); what comes between the two counts, or after the requests' count
    without a TPM limit (`mid`)."""
    requests = b"" if rpm is None else _REQUEST_HEAD + str(rpm).encode() + _REQUEST_REMAINING
    tokens = b"" if tpm is None else _TOKEN_HEAD + str(tpm).encode() + _TOKEN_REMAINING
    if rpm is None:
        s.head, s.mid = tokens, b""
    else:
        s.head, s.mid = requests, _REQUEST_RESET + tokens
    s.block_rpm, s.block_tpm = rpm, tpm


_RESET: Final = [duration(seconds).encode() for seconds in range(WINDOW + 1)]  # whole seconds -> OpenAI's reset text
_RESET_REQUESTS: Final = [(b"x-ratelimit-reset-requests", text) for text in _RESET]
_RESET_TOKENS: Final = [(b"x-ratelimit-reset-tokens", text) for text in _RESET]
_LIMIT_REQUESTS: Final[dict[int, tuple[bytes, bytes]]] = {}  # limit -> its x-ratelimit-limit-* header
_LIMIT_TOKENS: Final[dict[int, tuple[bytes, bytes]]] = {}
# `take_lines`' header lines (rhetor.api.header_lines): the same six headers as `_headers`, in its order, as they go
# on the wire (b"\r\n" before each "name: value"; names lower-case, values digits and OpenAI's reset text)
_REQUEST_HEAD: Final = b"\r\nx-ratelimit-limit-requests: "
_REQUEST_REMAINING: Final = b"\r\nx-ratelimit-remaining-requests: "
_REQUEST_RESET: Final = b"\r\nx-ratelimit-reset-requests: " + _RESET[WINDOW]  # the request just counted: a minute
_TOKEN_HEAD: Final = b"\r\nx-ratelimit-limit-tokens: "
_TOKEN_REMAINING: Final = b"\r\nx-ratelimit-remaining-tokens: "
_RESET_TOKEN_NAME: Final = b"\r\nx-ratelimit-reset-tokens: "
_RESET_TOKEN_LINES: Final = [_RESET_TOKEN_NAME + text for text in _RESET]


__all__ = ["InProcessLimiter", "RateLimiter", "Verdict", "Window", "duration"]
