"""Usage records into SQLite with fewer bound values: the INSERTs of one ledger flush, grouped by their "set".
Since round 9 the row layout (`usage_rows`) is the fallback of the packed one (rhetor.governance.sqlite_packs):
records JSON cannot hold exactly, and all of them where this SQLite's JSON reads numbers back inexactly.

Most columns of a flush's records repeat (key, front, provider, model, status, attempts, flags): those make a
record's set. A set with at least MIN_SET rows in a batch is written by a memoized INSERT whose text holds the
set's values as SQL literals, binding only the varying columns (6 of 25 for a plain request, see PLAIN), ROWS_32
and then ROWS_8 rows to a statement (multi-row VALUES) and the rest one row each; every other record is bound in
full. Binding 25 values a record and stepping one statement per row was most of a record's write cost: callgrind
(benchmarks/ledger_write.py), a record written in flushes of 128 of one set 33.3k -> 19.7k instructions (of 1,024:
33.0k -> 17.9k; 4 sets: 21.0k). The price is the grouping (a 14-value key hashed per record): a flush whose sets
all hold 2 records costs 38.9k a record (was 34.9k), which only happens when the load is light (a flush holds a
second's records; fewer than MIN_SET records skip grouping altogether).

Literals are only what quotes safely: ints in SQLite's 64-bit range, integral floats below 2**53 (SQLite's own
decimal parser misrounds ~1 in 20,000 other floats, so those are bound), None, and printable-ASCII strings of at
most MAX_LITERAL characters with `'` doubled (MAX_SET_TEXT for a set's literals together). A set holding anything
else is bound in full. Within one flush, row ids follow the sets rather than arrival order (ids given explicitly
cost ~1.4k a record): readers order by time first (`ORDER BY ts DESC, id DESC`), never by id alone.

Runs on the store's worker thread. Knows the usage table's columns and SQL; nothing of HTTP, fronts or prices.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from rhetor.governance.ledger import UsageRecord

MIN_SET, ROWS_32, ROWS_8 = 8, 32, 8
MAX_LITERAL = 512
MAX_SET_TEXT = 1024  # a set's literals together: a 32-row INSERT stays ~35 KB of SQL
_MEMO_MAX = 64  # sets whose statements are remembered; beyond it the memo starts afresh
# The varying columns (always bound); the optional ones, bound unless a record leaves all of them empty (PLAIN: a
# non-stream request without context, cache or reasoning tokens), when its statement holds them as literals; then
# the set's (literals). Together all of usage_rows' columns but `id`.
VARYING = ("ts", "request_id", "input_tokens", "output_tokens", "cost_usd", "latency_ms")
OPTIONAL = ("cached_tokens", "cache_write_tokens", "reasoning_tokens", "ttft_ms", "context_id", "saved_usd")
PLAIN = (0, 0, 0, None, None, 0.0)
SET = ("key_id", "component", "task_type", "front", "provider", "model", "attempts", "estimated", "unpriced",
       "status", "fallback", "cache_hit", "downgraded_from")
_ALL = f"INSERT INTO usage_rows ({', '.join(VARYING + OPTIONAL + SET)}) VALUES "
INSERT_ALL = _ALL + f"({', '.join('?' * (len(VARYING) + len(OPTIONAL) + len(SET)))})"
_INT_MIN, _INT_MAX, _FLOAT_EXACT = -(2 ** 63) + 1, 2 ** 63 - 1, 2.0 ** 53


def literal(value: Any) -> str | None:
    """`value` as an SQL literal that stores exactly what binding it would, or None when it is not inlined."""
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is int:
        return repr(value) if _INT_MIN <= value <= _INT_MAX else None
    if kind is float:  # integral and exact in a double; not -0.0 (its literal stores 0.0)
        if value.is_integer() and -_FLOAT_EXACT < value < _FLOAT_EXACT and (value != 0 or repr(value) == "0.0"):
            return repr(value)
        return None
    if kind is str:
        if len(value) <= MAX_LITERAL and value.isascii() and value.isprintable():
            return "'" + str.replace(value, "'", "''") + "'"
        return None
    return None


def set_statements(values: Sequence[Any], plain: bool = False) -> tuple[str, str, str] | None:
    """The INSERTs of 1, ROWS_8 and ROWS_32 rows for a set (`plain`: the OPTIONAL columns as PLAIN's literals), or
    None if one of its values is not inlined."""
    literals = [literal(v) for v in values]
    if None in literals or sum(map(len, literals)) > MAX_SET_TEXT:  # type: ignore[arg-type]
        return None
    bound = "?" * len(VARYING) if plain else "?" * (len(VARYING) + len(OPTIONAL))
    optional = [literal(v) for v in PLAIN] if plain else []
    row = f"({', '.join([*bound, *optional, *literals])})"  # type: ignore[list-item]
    return _ALL + row, _ALL + ", ".join([row] * ROWS_8), _ALL + ", ".join([row] * ROWS_32)


def full_row(r: UsageRecord, n: Any, attempts: str) -> tuple[Any, ...]:
    """All of a record's values for INSERT_ALL, each nullable column's None as `n` (`attempts`: its JSON)."""
    return (r.ts, n if (v := r.request_id) is None else v, r.input_tokens, r.output_tokens, r.cost_usd, r.latency_ms,
            r.cached_tokens, r.cache_write_tokens, r.reasoning_tokens, n if (f := r.ttft_ms) is None else f,
            n if (v := r.context_id) is None else v, r.saved_usd, r.key_id, n if (v := r.component) is None else v,
            n if (v := r.task_type) is None else v, r.front, n if (v := r.provider) is None else v,
            n if (v := r.model) is None else v, attempts, 1 if r.estimated else 0, 1 if r.unpriced else 0, r.status,
            1 if r.fallback else 0, 1 if r.cache_hit else 0, n if (v := r.downgraded_from) is None else v)


def grouped(records: Sequence[UsageRecord], split_plain: bool) -> dict[tuple[Any, ...], list[UsageRecord]]:
    """The records by their set: SET's values (attempts as JSON, flags as 0/1), then, with `split_plain`, whether
    the record leaves every OPTIONAL column empty (PLAIN), else None. One loop for both writers (this module's
    rows, rhetor.governance.sqlite_packs' packs); no call per record. The meter shares one `attempts` list among
    the records of the same single attempt (rhetor.governance.meter._one): its JSON is made again only when the
    list changes from the record before."""
    dumps = orjson.dumps
    sets: dict[tuple[Any, ...], list[UsageRecord]] = {}
    last: Any = None
    text = ""
    plain: bool | None = None
    for r in records:
        if split_plain:
            plain = (r.ttft_ms is None and r.context_id is None
                     and not (r.cached_tokens or r.cache_write_tokens or r.reasoning_tokens or r.saved_usd))
        if r.attempts is not last:
            last = r.attempts
            text = dumps(last).decode()
        key = (r.key_id, r.component, r.task_type, r.front, r.provider, r.model, text,
               1 if r.estimated else 0, 1 if r.unpriced else 0, r.status, 1 if r.fallback else 0,
               1 if r.cache_hit else 0, r.downgraded_from, plain)
        found = sets.get(key)
        if found is None:
            sets[key] = [r]
        else:
            found.append(r)
    return sets


class RowWriter:
    """Writes batches of UsageRecords into one connection's usage_rows; remembers each set's statements."""

    def __init__(self, null: Any = None) -> None:
        self.null = null  # what a nullable varying column's None binds as (the store's NaN: no adapter lookup)
        self._memo: dict[tuple[Any, ...], tuple[str, str, str] | None] = {}

    def write(self, conn: sqlite3.Connection, records: Sequence[UsageRecord]) -> None:
        """Insert `records` (inside the caller's transaction)."""
        n, dumps = self.null, orjson.dumps
        if len(records) < MIN_SET:  # no set can fill a statement: bound in full, without grouping
            conn.executemany(INSERT_ALL, [full_row(r, n, dumps(r.attempts).decode()) for r in records])
            return
        sets = grouped(records, split_plain=True)
        single: list[tuple[Any, ...]] = []
        for key, recs in sets.items():
            statements = self._statements(key) if len(recs) >= MIN_SET else None
            if statements is None:
                attempts = key[6]
                single += [full_row(r, n, attempts) for r in recs]
                continue
            flat: list[Any] = []  # the rows' bound values, one after the other: statements take slices of it
            if key[-1]:
                w = len(VARYING)
                for r in recs:
                    flat += (r.ts, n if (v := r.request_id) is None else v, r.input_tokens, r.output_tokens,
                             r.cost_usd, r.latency_ms)
            else:
                w = len(VARYING) + len(OPTIONAL)
                for r in recs:
                    flat += (r.ts, n if (v := r.request_id) is None else v, r.input_tokens, r.output_tokens,
                             r.cost_usd, r.latency_ms, r.cached_tokens, r.cache_write_tokens, r.reasoning_tokens,
                             n if (f := r.ttft_ms) is None else f, n if (v := r.context_id) is None else v,
                             r.saved_usd)
            one, eight, many = statements  # ROWS_32 rows a statement, then ROWS_8, then one each
            size = len(flat)
            step = ROWS_32 * w
            whole = size // step * step
            if whole:
                conn.executemany(many, [flat[j:j + step] for j in range(0, whole, step)])
            step = ROWS_8 * w
            end = whole + (size - whole) // step * step
            if end > whole:
                conn.executemany(eight, [flat[j:j + step] for j in range(whole, end, step)])
            if end < size:
                conn.executemany(one, [flat[j:j + w] for j in range(end, size, w)])
        if single:
            conn.executemany(INSERT_ALL, single)

    def _statements(self, key: tuple[Any, ...]) -> tuple[str, str, str] | None:
        try:
            return self._memo[key]
        except KeyError:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            statements = self._memo[key] = set_statements(key[:-1], key[-1])
            return statements


__all__ = ["INSERT_ALL", "MAX_LITERAL", "MIN_SET", "OPTIONAL", "PLAIN", "ROWS_8", "ROWS_32", "SET", "VARYING",
           "RowWriter", "full_row", "literal", "set_statements"]
