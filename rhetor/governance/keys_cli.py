"""`python -m rhetor keys create|list|revoke|rotate`: caller keys managed straight in `$RHETOR_DATA_DIR/keys.db`
(access to the data directory is the admin right here; a running Rhetor sees the change within
RHETOR_KEYS_POLL_S). Prints a table or JSON; a new secret is printed once. Knows the key store and the spec;
nothing of HTTP.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from rhetor.governance.access import Access
from rhetor.governance.keys import parse_spec
from rhetor.settings import Settings


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, list, revoke or rotate caller keys (keys.db)")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    create = ks.add_parser("create", help="create a key and print its secret (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--component", help="the component the key speaks for (attributes usage, picks routes)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--budget", dest="budget_id", help="budget id")
    create.add_argument("--models", help="allowed models, comma-separated (provider/model or globs)")
    create.add_argument("--providers", help="allowed providers, comma-separated")
    create.add_argument("--routes", help="allowed HTTP routes, comma-separated path globs")
    create.add_argument("--expires", help="expiry: ISO 8601 time or unix seconds, or a duration like 30d, 12h")
    create.add_argument("--json", action="store_true")
    lst = ks.add_parser("list", help="list keys (never their secrets)")
    lst.add_argument("--all", action="store_true", help="include revoked keys")
    lst.add_argument("--json", action="store_true")
    for name in ("revoke", "rotate"):
        p = ks.add_parser(name, help=f"{name} a key by id")
        p.add_argument("key_id")
        p.add_argument("--json", action="store_true")


def _expiry(value: str | None) -> Any:
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return time.time() + float(value[:-1]) * units[value[-1]]
    return float(value) if value.replace(".", "", 1).isdigit() else value


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


async def run(settings: Settings, args: argparse.Namespace) -> str:
    """The command's output (raises InvalidRequestError naming a bad field, RhetorError for a missing key)."""
    access = Access(settings)
    await access.store.open()
    try:
        return await _run(access, args)
    finally:
        await access.store.close()


async def _run(access: Access, args: argparse.Namespace) -> str:
    cmd = args.keys_command
    if cmd == "create":
        raw = {"name": args.name, "component": args.component, "rpm": args.rpm, "tpm": args.tpm,
               "budget_id": args.budget_id, "allowed_models": _csv(args.models),
               "allowed_providers": _csv(args.providers), "allowed_routes": _csv(args.routes),
               "expires_at": _expiry(args.expires)}
        spec = parse_spec({k: v for k, v in raw.items() if v is not None}, creating=True)
        rec, secret = await access.create(spec)
        if args.json:
            return _json({"key": rec.public(), "secret": secret})
        return (f"created {rec.id} ({rec.name})\nsecret: {secret}\n"
                "store it now: Rhetor keeps only its hash and cannot show it again\n")
    if cmd == "list":
        keys = [r.public() for r in await access.store.all() if args.all or r.revoked_at is None]
        return _json({"keys": keys}) if args.json else _table(keys)
    if cmd == "revoke":
        gone = await access.revoke(args.key_id)
        if gone is None:
            raise LookupError(f"no key {args.key_id!r}")
        return _json({"revoked": True, "key": gone.public()}) if args.json else f"revoked {gone.id} ({gone.name})\n"
    rotated = await access.rotate(args.key_id)
    if rotated is None:
        raise LookupError(f"no active key {args.key_id!r}")
    rec, secret = rotated
    return _json({"key": rec.public(), "secret": secret}) if args.json else \
        f"rotated {rec.id} ({rec.name}); the old secret no longer works\nsecret: {secret}\n"


def _json(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


def _table(keys: list[dict[str, Any]]) -> str:
    if not keys:
        return "no keys\n"
    cols = ("id", "name", "state", "component", "rpm", "tpm", "budget_id", "key_hint")
    rows = [[str(k.get(c) if k.get(c) is not None else "-") for c in cols] for k in keys]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


__all__ = ["add_parser", "run"]
