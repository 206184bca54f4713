"""Command line: `python -m rhetor [--host --port --log-level]` serves; subcommands `check-config [PATH]`,
`providers`, `models` and `chat "text"`. Builds Settings once and passes them down. Exit codes: 0 ok, 2 bad config.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from rhetor import heap
from rhetor.errors import ConfigError, RhetorError
from rhetor.governance import keys_cli
from rhetor.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rhetor", description="Rhetor, the Tekton LLM gateway")
    p.add_argument("--host", help="bind address (RHETOR_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (RHETOR_PORT, default 8003)")
    p.add_argument("--log-level", help="log level (RHETOR_LOG_LEVEL, default info)")
    p.add_argument("--workers", type=int, help="serving processes on the one port (RHETOR_WORKERS, default 1)")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve HTTP and WebSocket (the default)")
    cc = sub.add_parser("check-config", help="validate a tasks.json and print the resolved routes")
    cc.add_argument("path", nargs="?", type=Path, help="tasks.json (default: RHETOR_TASK_CONFIG or built-in)")
    sub.add_parser("providers", help="list providers, whether they are available, and why not")
    mo = sub.add_parser("models", help="the model catalogue: current and deprecated models (--all: retired too)")
    mo.add_argument("provider", nargs="?", help="only this provider's models")
    mo.add_argument("--all", action="store_true", help="include retired models")
    chat = sub.add_parser("chat", help="ask a question and stream the answer to the terminal")
    chat.add_argument("text")
    chat.add_argument("--provider")
    chat.add_argument("--model")
    chat.add_argument("--context", help="context id (default: stateless)")
    chat.add_argument("--task", default=None)
    us = sub.add_parser("usage", help="requests, tokens and cost from the usage ledger, as a table")
    us.add_argument("--since", default="7d", help="how far back: 7d, 24h, 30m, an ISO date (default 7d)")
    us.add_argument("--until", help="end of the range (default: now)")
    us.add_argument("--by", default="", help="group by any of component,model,provider,key,task,day,front,status")
    us.add_argument("--format", choices=["table", "csv", "json"], default="table")
    keys_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command not in (None, "serve"):
        heap.release()  # only a server keeps the collector held until it has started (rhetor.heap)
    try:
        settings = Settings.from_env(host=args.host, port=args.port, log_level=args.log_level, workers=args.workers)
        if args.command == "check-config":
            return _check_config(settings, args.path or settings.task_config)
        if args.command == "models":
            return _models(settings, args)
        if args.command == "providers":
            return asyncio.run(_providers(settings))
        if args.command == "usage":
            return asyncio.run(_usage(settings, args))
        if args.command == "keys":
            return asyncio.run(_keys(settings, args))
        if args.command == "chat":
            return asyncio.run(_chat(settings, args))
        return _serve(settings)
    except ConfigError as exc:
        print(f"rhetor: {exc.message}", file=sys.stderr)
        return 2


def _check_config(settings: Settings, path: Path | None) -> int:
    from rhetor.catalog import load_catalog
    from rhetor.providers import Providers
    from rhetor.routing.config import describe, load_config
    from rhetor.routing.deployment_check import check_deployments
    from rhetor.routing.lifecycle import check_routes

    providers = Providers(settings)  # RHETOR_PROVIDERS validated here too, naming the key path
    config = load_config(path, providers.deployment_kinds())
    catalog = load_catalog(settings.catalog_file)
    deprecated = check_routes(config, catalog, str(path or "tasks.json"))
    check_deployments(config, providers.deployments, catalog, str(path or "tasks.json"))
    print(f"{path or 'built-in tasks.json'}: OK")
    if providers.deployments:
        print(f"{settings.providers_file}: {len(providers.deployments)} deployments, strategy {providers.strategy}")
    print(describe(config, providers.default_models()))
    for line in deprecated:
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _models(settings: Settings, args: argparse.Namespace) -> int:
    from rhetor.catalog import load_catalog

    catalog = load_catalog(settings.catalog_file)
    wanted = [args.provider] if args.provider else list(catalog.providers)
    print(f"catalogue as of {catalog.as_of}" + (f" + {settings.catalog_file}" if settings.catalog_file else ""))
    print(f"{'provider/model':42} {'status':24} {'context':>9} {'output':>7}  {'$in/$out per 1M':17} capabilities")
    for provider in wanted:
        for entry in catalog.providers[provider].models if provider in catalog.providers else ():
            if entry.status == "retired" and not args.all:
                continue
            status = entry.status + (f" {entry.shutdown}" if entry.status == "deprecated" else "")
            price = f"{entry.price.input:g}/{entry.price.output:g}" if entry.price else "unpriced"
            caps = ",".join([*entry.modalities, *(["tools"] if entry.tools else []),
                             *(["structured"] if entry.structured_output else []),
                             *([] if entry.kind == "chat" else [entry.kind])])
            then = f"  -> {entry.successor}" if entry.successor else ""
            print(f"{provider + '/' + entry.id:42} {status:24} {entry.context_window or '-':>9} "
                  f"{entry.max_output or '-':>7}  {price:17} {caps}{then}")
    return 0


async def _providers(settings: Settings) -> int:
    from rhetor.providers import Providers
    from rhetor.providers.listing import listed_models

    providers = Providers(settings)
    try:  # deployments by name and kind; keys never printed, only how many (rhetor.providers.pool)
        listings = await listed_models(providers)  # live where the upstream lists (bounded, concurrent)
        for name, a in (await providers.availability()).items():
            default = providers.get(name).default_model
            spec = providers.deployments.get(name)
            what = f"{spec.kind}{'/' + spec.preset.name if spec.preset else ''} keys={len(spec.keys)}" if spec else ""
            listed = listings[name]
            models = f"models={len(listed.models)} {listed.source}"
            why = f"; models: {listed.reason}" if listed.source == "fallback" else ""
            print(f"{name:14} {'available' if a.ok else 'unavailable':12} default={default:28} {what:24} "
                  f"{models:24} {a.reason}{why}")
    finally:
        await providers.aclose()
    return 0


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(await keys_cli.run(settings, args), end="")
    except (RhetorError, LookupError) as exc:
        print(f"rhetor keys: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    return 0


async def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from rhetor.context import SqliteContextStore
    from rhetor.gateway import ChatInput, Gateway
    from rhetor.providers import Providers
    from rhetor.routing.config import load_config
    from rhetor.types import StreamEnd, StreamError, TextDelta

    store = SqliteContextStore(settings.db_path)
    await store.open()
    gw = Gateway(settings, load_config(settings.task_config), Providers(settings), store)
    code = 0
    try:
        session = await gw.open_stream(ChatInput(message=args.text, context_id=args.context, task_type=args.task,
                                                 provider_id=args.provider, model_id=args.model))
        async for event in session.events():
            if isinstance(event, TextDelta):
                print(event.text, end="", flush=True)
            elif isinstance(event, StreamEnd):
                print(f"\n[{session.provider}/{session.model}{' simulated' if session.simulated else ''}"
                      f"{' fallback' if session.info.fallback else ''}]", file=sys.stderr)
            elif isinstance(event, StreamError):
                print(f"\nrhetor: stream failed: {event.error}", file=sys.stderr)
                code = 1
    except RhetorError as exc:
        print(f"rhetor: {exc.message}", file=sys.stderr)
        code = 1
    finally:
        await gw.aclose()
        await store.close()
    return code


async def _usage(settings: Settings, args: argparse.Namespace) -> int:
    from rhetor.governance.service import usage_report

    try:
        print(await usage_report(settings, args.since, args.until, args.by, args.format), end="")
    except RhetorError as exc:
        print(f"rhetor: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from rhetor.api.admin import on_sighup
    from rhetor.api.app import create_app
    from rhetor.api.health import UVICORN_GRACE_S, RhetorServer
    from rhetor.api.protocols import ConnectionLimits, http_protocol, ws_protocol
    from rhetor.observability.logs import setup_logging
    from rhetor.workers import WorkerInfo, listen_socket, supervise, watch

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # not fatal while starting; a reload once serving (below)
    setup_logging(settings.log_level, settings.log_format)  # JSON or text, uvicorn's loggers included
    worker = WorkerInfo.from_env()  # one of `--workers N`'s processes (rhetor.workers), or None
    if settings.workers > 1 and worker is None:
        if settings.database_url is not None or settings.redis_url is not None:
            _check_engines(settings)  # once, before N workers would each say the same
        heap.release()  # the supervisor serves nothing itself: its collector as usual
        return supervise(settings)  # N workers on one port, Hermes once, /metrics summed (rhetor.workers)
    if settings.database_url is not None or settings.redis_url is not None:
        settings = _check_engines(settings)
    app = create_app(settings)  # loads and validates the task config before binding the port
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler that was installed before it
    # ran. Installing a no-op one first makes a drained shutdown exit 0, as Tekton's launcher expects.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: on_sighup(app))  # re-read the config files (rhetor.config.reload)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            loop="uvloop", access_log=False, log_config=None,  # Rhetor writes the access lines
                            # httptools and websockets, guarded: head/body timeouts, a connection cap (503),
                            # WebSocket messages capped like HTTP bodies (ERROR frame + close 1009)
                            http=http_protocol(ConnectionLimits.from_settings(settings).fit_descriptors()),
                            ws=ws_protocol(), ws_max_size=settings.max_body_bytes,
                            timeout_graceful_shutdown=UVICORN_GRACE_S, lifespan="on",
                            # X-Forwarded-For is believed only from the proxies named in RHETOR_TRUSTED_PROXIES
                            # (uvicorn's default trusts 127.0.0.1, so behind a local proxy everyone looked local)
                            proxy_headers=bool(settings.trusted_proxies),
                            forwarded_allow_ips=list(settings.trusted_proxies) or None)
    # RhetorServer = uvicorn's server, known to the app: POST /shutdown stops it, a signal marks it not-ready
    # and tells Hermes at once, and the Hermes endpoint uses the port it really bound. It drains for
    # RHETOR_SHUTDOWN_GRACE_S and ends open streams itself *before* uvicorn's (short) graceful timeout starts.
    server = RhetorServer(config, app.state.runtime, settle_heap=True)
    if worker is None:
        server.run()
    else:  # its own SO_REUSEPORT listener on the group's port; a ready mark and a watch on the supervisor
        try:
            sock = listen_socket(settings.host, settings.port)
        except OSError as exc:
            raise ConfigError(f"worker {worker.index}: cannot bind {settings.host}:{settings.port}: {exc}") from None
        watch(worker, server)
        server.run(sockets=[sock])
    heap.release()  # a server that never started did not settle (rhetor.heap)
    return 0 if server.started else 3


def _check_engines(settings: Settings) -> Settings:
    from rhetor.storage.backends import check, degrade

    problems = asyncio.run(check(settings))  # PostgreSQL / Redis down: exit 2 naming the URL, no password
    if problems and not settings.degraded_start:
        raise ConfigError("; ".join(problems) + " (RHETOR_DEGRADED_START=1 starts anyway, degraded)")
    return degrade(settings, problems) if problems else settings


__all__ = ["main"]
