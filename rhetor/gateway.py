"""The facade the web layer calls: resolve a route, assemble the conversation (stored history + system
prompt, trimmed to the target's window), run it through the fallback runner, and record the turn.

Context rule: a request with one `message` continues the stored conversation of `context_id`; a request
with a `messages` list *is* the conversation, and only its trailing new turn (the messages after the last
assistant message) is recorded, so resending a whole history never duplicates it. Without a context id a
request is stateless. A turn (user + reply) is written atomically when the reply completes; a failed or
cancelled turn is stored with status "error"/"cancelled" (and any partial reply) for inspection, but is
never replayed to a model.
Knows nothing of HTTP, SSE or WebSocket framing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from typing import Any

from rhetor.catalog import load_catalog
from rhetor.context import ContextStore, NewMessage
from rhetor.context.availability import Persistence
from rhetor.context.parts import parts_metadata, stored_message
from rhetor.context.retrieval import Memory, Recall
from rhetor.context.store import StoredMessage
from rhetor.context.window import budget_for, fit_history, message_tokens
from rhetor.drain import Drain
from rhetor.errors import InvalidRequestError, StoreUnavailableError
from rhetor.governance.gate import LATER, Gate
from rhetor.governance.ledger import UsageRecord
from rhetor.governance.meter import NO_METER, Meter, Metered
from rhetor.observability import chat_span, tracing
from rhetor.prompts import TemplateStore, apply_template
from rhetor.providers import Providers
from rhetor.providers.base import Provider, TokenCounter, estimate_tokens
from rhetor.providers.fidelity import admit as admit_fields
from rhetor.routing.breaker import CircuitBreaker
from rhetor.routing.config import TaskConfig
from rhetor.routing.fallback import FallbackRunner, RunInfo
from rhetor.routing.memo import RouteMemo
from rhetor.routing.models import ModelNames, pinned
from rhetor.routing.options import request_options
from rhetor.routing.router import Route, Target, route
from rhetor.session import ChatInput, ChatOutcome, Prepared, StreamSession, now_iso
from rhetor.settings import Settings
from rhetor.types import ChatRequest, Message

_SAMPLING = ("temperature", "top_p", "max_tokens")


class Gateway:
    def __init__(self, settings: Settings, config: TaskConfig, providers: Providers, store: ContextStore,
                 templates: TemplateStore | None = None) -> None:
        self.settings = settings
        self.config = config
        self.providers = providers
        self.store = store
        self.memory: Memory | None = None  # set by the app (rhetor.api.app); None = no retrieval
        self.persistence = Persistence()  # the context store lost: chat goes on without it, saying so
        self.templates = templates if templates is not None else TemplateStore(None)  # None: built-ins only
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_s,
                                      window_s=settings.breaker_window_s,
                                      failure_rate=settings.breaker_failure_rate,
                                      min_calls=settings.breaker_min_calls)
        self.runner = FallbackRunner(providers, self.breaker, max_retry_after_s=settings.max_retry_after_s,
                                     backoff_base_s=settings.backoff_base_s,
                                     max_retry_wait_s=settings.max_retry_wait_s)
        self.defaults = providers.default_models()
        # deployments of the providers file (rhetor.providers.deployments): names for the router, the balancer
        self.deployment_kinds, self.listed_models = providers.deployment_kinds(), providers.listed()
        if providers.deployments:
            from rhetor.routing.balance import Balancer

            self.runner.balancer = Balancer(providers, self.breaker, strategy=settings.balance,
                                            price=self._deployment_price)
        self.catalog = load_catalog(settings.catalog_file)  # lifecycle of the models named (rhetor.catalog)
        self.meter: Meter | None = None  # the usage ledger's meter (rhetor.governance); set by the app
        self.gate: Gate | None = None  # budgets and the response cache (rhetor.governance.gate); set by the app
        self.drain = Drain()  # open streams and answers, ended by the shutdown deadline (rhetor.drain)
        self.routes = RouteMemo()  # routing decisions per routing input, for the configuration in place
        self.model_names = ModelNames()  # the compat fronts' model names, resolved once each

    async def aclose(self) -> None:
        await self.providers.aclose()

    def _deployment_price(self, deployment: str, kind: str, model: str) -> float | None:
        """$ per 1M input + output tokens of `model` at `deployment`: its own `prices`, else the catalogue's."""
        spec = self.providers.deployments.get(deployment)
        if spec is not None and spec.prices is not None:
            return spec.prices[0] + spec.prices[1]
        entry = self.catalog.entry(kind, model)
        price = entry.price if entry is not None else None
        return None if price is None else price.input + price.output

    # -- preparation -------------------------------------------------------------------------------------
    async def _prepare(self, inp: ChatInput) -> Prepared:
        # The one check of `options` for every front, before routing or I/O (rhetor.routing.options). In place:
        # the input is this request's own, the check is idempotent, and a copy of ChatInput costs ~4.5 µs.
        if inp.options or type(inp.options) is not dict:  # an empty dict: nothing to check (it would answer {})
            inp.options = request_options(inp.options)
        traced = tracing.active() is not None  # read once: with tracing off, no span call below is made
        if not traced:
            rt = self._route(inp)
        else:
            with tracing.span("rhetor.route") as route_span:
                rt = self._route(inp)
                chat_span.routed(route_span, rt)
        caller_system, message, messages, template_system = inp.system_prompt, inp.message, inp.messages, None
        stored: list[StoredMessage] = []
        if inp.template_id is not None:
            with tracing.span("rhetor.template.render", {"rhetor.template.id": inp.template_id,
                                                         "rhetor.template.version": inp.template_version or 0}):
                message, messages, template_system = await apply_template(self.templates, inp.template_id,
                                                                          inp.template_version, inp.variables,
                                                                          message, messages)
        if messages is not None:
            # one pass: ~4k instructions where three comprehensions and a generator took ~13k (callgrind, one turn)
            systems: list[str] = []
            convo: list[Message] = []
            cut = 0  # the new turn: the messages after the last assistant message
            for m in messages:
                if m.role == "system":
                    systems.append(m.content)
                else:
                    convo.append(m)
                    if m.role == "assistant":
                        cut = len(convo)
            if not convo:
                raise InvalidRequestError("messages must contain at least one non-system message",
                                          param="messages")
            if systems:
                caller_system = "\n\n".join([caller_system, *systems] if caller_system else systems) or None
            else:
                caller_system = caller_system or None
            history, new_turn = convo[:cut], convo[cut:]
        else:
            assert message is not None
            new_turn = [Message("user", message, images=inp.images)]
            history = []
            if inp.context_id is not None and self.memory is None:  # no memory (the CLI): the whole history
                with tracing.span("rhetor.context.load", {"gen_ai.conversation.id": inp.context_id}):
                    try:
                        stored = await self.store.history(inp.context_id)
                    except StoreUnavailableError as exc:  # answered without it, and said so
                        self.persistence.lost(inp, exc)
                history = [stored_message(m.role, m.content, m.metadata) for m in stored
                           if m.role in ("user", "assistant")]
        if rt.component:
            system = await self.templates.system_prompt(rt.component, template_system, caller_system)  # rhetor.prompts
        elif template_system is None:  # the combination rule of nothing but the caller's part
            system = caller_system or None
        else:  # no component prompt to look up: the same rule, without the store's two coroutines
            system = self.templates.builtin_system_prompt(None, template_system, caller_system)
        recall = None
        if self.memory is not None and messages is None and message is not None and inp.context_id:
            # only what can fit: a bounded tail of the stored turns, never the whole history (rhetor.context.retrieval)
            with tracing.span("rhetor.context.load", {"gen_ai.conversation.id": inp.context_id}) as load_span:
                try:
                    history, recall = await self._window(rt, inp.context_id, message, system)
                except StoreUnavailableError as exc:  # answered without it, and said so
                    self.persistence.lost(inp, exc)
                tracing.set_attributes(load_span, {"rhetor.context.messages": len(history)})
        if traced:
            chat_span.prepared(system, [*history, *new_turn])  # the prompt on the span: only with content capture on
        return Prepared(rt, system, history, new_turn, inp.context_id, inp, recall)

    def _route(self, inp: ChatInput) -> Route:
        # route(), pinned(), the key's allowed providers and models, then the catalogue: a retired model is a
        # 400 naming its successor, Tekton's legacy callers get the successor instead (rhetor.routing.lifecycle)
        identity = inp.identity
        # positionally, in RouteMemo.route's order (keywords cost ~0.5k instructions each: see there)
        return self.routes.route(self.config, self.catalog, self.defaults, self.deployment_kinds, self.listed_models,
                                 inp.task_type, inp.component, inp.context_id, inp.provider_id, inp.model_id,
                                 inp.options, inp.pinned, inp.front.startswith("legacy"),  # upgrade_retired
                                 identity.permitted if identity is not None and identity.restricted else None)

    async def _window(self, rt: Route, context_id: str, text: str,
                      system: str | None) -> tuple[list[Message], Recall | None]:
        """The stored history to send: the recent turns that fit the largest room among the route's targets
        (`_rooms`; fit_history trims per target), and, when they overflow the first one's, the recent turns plus
        the older ones most relevant to `text` (a Recall). Its cost is bounded by the window, not the history."""
        assert self.memory is not None
        fixed = message_tokens(Message("user", text)) + (estimate_tokens(system) if system else 0)
        room, load = await self._rooms(rt, fixed)
        return await self.memory.window(context_id, text, room_tokens=room, load_tokens=load)

    async def _rooms(self, rt: Route, fixed_tokens: int) -> tuple[int, int]:
        """(the first target's room for stored history, the largest room): windows minus the reply's room and
        `fixed_tokens` (what is sent anyway), over the targets that can be tried (a keyless vendor's ~1M-token
        window would load the whole conversation per request for a target the runner skips: the soak's growing
        memory, benchmarks/README.md "Round 6, memory under load"); with none available, all of them."""
        reply = _sampling(rt.options).get("max_tokens")
        providers = [(self.providers.get(t.provider), t.model) for t in rt.targets]
        tried = [(p, m) for p, m in providers if (await p.available()).ok] or providers
        rooms = [budget_for(p.context_window(m), reply) - fixed_tokens for p, m in tried]
        return (rooms[0], max(rooms)) if rooms else (0, 0)

    async def prompt_room(self, inp: ChatInput, fixed_tokens: int) -> tuple[int, int]:
        """`_rooms` for a front that keeps its conversation itself (the Responses API) and asks `memory.window`
        what fits, as `_window` does for native contexts."""
        inp.options = request_options(inp.options)
        rt = route(self.config, defaults=self.defaults, task_type=inp.task_type, component=inp.component,
                   context_id=inp.context_id, provider_id=inp.provider_id, model_id=inp.model_id,
                   options=inp.options, deployments=self.deployment_kinds, listed=self.listed_models)
        return await self._rooms(pinned(rt, inp.options) if inp.pinned else rt, fixed_tokens)

    def _builder(self, prepared: Prepared) -> Any:
        opts = prepared.route.options
        if opts:
            sampling = _sampling(opts)
            extra = {k: v for k, v in opts.items() if k not in _SAMPLING and k not in ("stop", "seed")}
        else:  # no options at all (most compat requests): no comprehension to run
            sampling, extra = {}, {}
        stops = opts.get("stop")  # a list of strings or None: request_options normalized it
        inp = prepared.inp
        seed = inp.seed if inp.seed is not None else opts.get("seed")

        def build(target: Target, provider: Provider) -> ChatRequest:
            # only stored history is ever trimmed: without it there is no window to look up
            budget = budget_for(provider.context_window(target.model), sampling.get("max_tokens")) \
                if prepared.history else 0
            convo = fit_history(prepared.history, prepared.new_turn, budget_tokens=budget, system=prepared.system) \
                if prepared.history else list(prepared.new_turn)  # what fit_history answers without history
            # positionally, in ChatRequest's field order: its 17 keyword arguments cost ~8k instructions a request
            # (callgrind, a dataclass __init__ matches each keyword by name)
            request = ChatRequest(target.model, convo, prepared.system,  # model, messages, system
                                  sampling.get("temperature"), sampling.get("max_tokens"), sampling.get("top_p"),
                                  stops, target.timeout_s, extra,  # stop, timeout_s, extra
                                  inp.tools, inp.tool_choice, inp.response_format, seed, inp.user, inp.reasoning,
                                  inp.service_tier, inp.passthrough)
            if inp.passthrough is not None:  # forwarded, translated or refused: never silent (400 before any I/O)
                entry = self.catalog.entry(target.provider, target.model)  # its modalities: images or not
                admit_fields(request, getattr(provider, "wire", provider.name), target.provider,
                             entry.modalities if entry is not None else None)
            return request

        return build

    async def _record(self, prepared: Prepared, reply: str, status: str) -> None:
        if prepared.context_id is None or not prepared.inp.record:
            return
        turn = [NewMessage(m.role, m.content, parts_metadata(m)) for m in prepared.new_turn]  # images kept
        if reply or status == "complete":
            turn.append(NewMessage("assistant", reply))
        with tracing.span("rhetor.context.store", {"gen_ai.conversation.id": prepared.context_id,
                                                   "rhetor.context.status": status}):
            try:
                await self.store.append_turn(prepared.context_id, turn, status=status)
            except StoreUnavailableError as exc:  # the reply says it was not stored (a stream: the log does)
                self.persistence.lost(prepared.inp, exc)
                return
        if self.persistence.down_since is not None:
            self.persistence.ok()
        if self.memory is not None:
            self.memory.notify()  # the indexer embeds the turn in the background; nothing waits for it

    # -- entry points ----------------------------------------------------------------------------------
    def _metered(self, inp: ChatInput, prepared: Prepared, info: RunInfo) -> Metered:
        """The usage ledger's view of this request: one record when it ends, however it ends."""
        meter = self.meter
        if meter is None:
            return NO_METER
        return Metered(meter, self._begin(meter, inp, prepared), info, inp.started, prepared.input_estimate)

    @staticmethod
    def _begin(meter: Meter, inp: ChatInput, prepared: Prepared) -> UsageRecord:
        """The record alone (the non-streaming chat ends it itself; `_metered` wraps it for a stream).
        Positionally, in Meter.begin's order (its keywords cost ~5k instructions a request, callgrind)."""
        rt = prepared.route
        first = rt.targets[0] if rt.targets else None
        return meter.begin(inp.front, inp.request_id, inp.key_id, rt.component, rt.task_type, inp.context_id,
                           inp.started, first.provider if first is not None else None,
                           first.model if first is not None else None)

    def chat(self, inp: ChatInput) -> Coroutine[Any, Any, ChatOutcome]:
        """The chat, to be awaited. With tracing off, `_chat`'s own coroutine: no wrapper layer per request."""
        if tracing.active() is None:
            return self._chat(inp)
        return self._traced_chat(inp)

    async def _traced_chat(self, inp: ChatInput) -> ChatOutcome:
        span = chat_span.start(inp.front, inp.request_id, inp.context_id)
        if span is None:  # not reached: tracing is active (the type allows None)
            return await self._chat(inp)
        with chat_span.using(span):
            try:
                outcome = await self._chat(inp)
            except BaseException as exc:
                tracing.end(span, exc)
                raise
        chat_span.answered(span, outcome.response, outcome.info)
        tracing.end(span)
        return outcome

    async def _chat(self, inp: ChatInput) -> ChatOutcome:
        prepared = await self._prepare(inp)
        info = RunInfo([])
        # The usage ledger's record of this request, ended here (answered or failed: exactly one of them) without
        # a Metered of its own (~3k instructions a request, benchmarks/instructions.py)
        meter = self.meter
        rec = None if meter is None else self._begin(meter, inp, prepared)
        build = self._builder(prepared)
        self.drain.calls += 1
        try:
            # cache, then budgets: may answer, re-route or refuse before any upstream call (rhetor.governance.gate)
            gate = self.gate
            if gate is not None:  # inline, and without a coroutine when the gate has nothing to await
                ticket = gate.admit_now(prepared, rec)
                prepared.ticket = await gate.admit(prepared, build, self.providers, rec) if ticket is LATER \
                    else ticket  # type: ignore[assignment]
            if prepared.ticket is not None and prepared.ticket.hit is not None:
                response = prepared.ticket.serve(info)
            else:
                response = await self.runner.complete(prepared.route, build, info)
        except BaseException as exc:
            if meter is not None and rec is not None:
                meter.failed(rec, info, inp.started, exc)
            await asyncio.shield(self._record(prepared, "", "error"))
            raise
        finally:
            self.drain.calls -= 1
            if prepared.ticket is not None:
                prepared.ticket.release()  # no await before the meter records the real cost
        if meter is not None and rec is not None:
            meter.answered(rec, info, inp.started, response, prepared.input_estimate)
        if prepared.ticket is not None:
            prepared.ticket.answered(response, info)
        if prepared.context_id is not None:  # nothing to record without a context (no coroutine for it)
            await self._record(prepared, response.content, "complete")
        return ChatOutcome(response, info, inp.context_id, time.time(), prepared.recall, inp.notes)  # (positional)

    def open_stream(self, inp: ChatInput) -> Coroutine[Any, Any, StreamSession]:
        """Resolve and open a stream, to be awaited; raises (nothing committed) if every target fails before its
        first event. With tracing off, `_open_stream`'s own coroutine: no wrapper layer per request."""
        if tracing.active() is None:
            return self._open_stream(inp, None)
        return self._traced_open_stream(inp)

    async def _traced_open_stream(self, inp: ChatInput) -> StreamSession:
        span = chat_span.start(inp.front, inp.request_id, inp.context_id)
        if span is None:
            return await self._open_stream(inp, None)
        with chat_span.using(span):
            try:
                return await self._open_stream(inp, span)
            except BaseException as exc:
                tracing.end(span, exc)
                raise

    async def _open_stream(self, inp: ChatInput, span: Any) -> StreamSession:
        prepared = await self._prepare(inp)
        info = RunInfo()
        metered = self._metered(inp, prepared, info)
        build = self._builder(prepared)
        try:
            gate = self.gate
            if gate is not None:  # as in _chat
                ticket = gate.admit_now(prepared, metered.rec)
                prepared.ticket = await gate.admit(prepared, build, self.providers, metered.rec) \
                    if ticket is LATER else ticket  # type: ignore[assignment]
            if prepared.ticket is not None and prepared.ticket.hit is not None:
                prepared.ticket.serve(info)
                events = prepared.ticket.hit.replay()
            else:
                events = await self.runner.open_stream(prepared.route, build, info)
        except BaseException as exc:
            if prepared.ticket is not None:
                prepared.ticket.release()
            metered.failed(exc)
            await asyncio.shield(self._record(prepared, "", "error"))
            raise
        return StreamSession(prepared, info, events, record=self._record, drain=self.drain, span=span,
                             metered=metered)

    async def count_tokens(self, inp: ChatInput) -> tuple[int, str, str] | None:
        """The vendor's own token count of `inp` (system and tools included) when its first target's provider
        has one (rhetor.providers.base.TokenCounter); None otherwise, and the caller estimates."""
        prepared = await self._prepare(inp)
        target = prepared.route.targets[0]
        provider = self.providers.get(target.provider)
        if not isinstance(provider, TokenCounter):
            return None
        request = self._builder(prepared)(target, provider)
        return await provider.count_tokens(request), target.provider, target.model

    # -- inspection ------------------------------------------------------------------------------------
    async def provider_status(self) -> dict[str, Any]:
        from rhetor.provider_status import provider_status

        return await provider_status(self)


def _sampling(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The set sampling knobs of a route's options (already typed: tasks.json's schema, request_options)."""
    return {key: opts[key] for key in _SAMPLING if opts.get(key) is not None}


__all__ = ["ChatInput", "ChatOutcome", "Gateway", "StreamSession", "now_iso"]  # the request types: rhetor.session
