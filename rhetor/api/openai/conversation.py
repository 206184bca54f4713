"""Where a Responses API conversation lives: Rhetor's context store. A response's items (input and output) are
stored as the messages of one turn, each carrying its canonical item in `metadata.item`, so the conversation
comes back losslessly (function calls and their outputs included) for any provider, and is visible in
/api/v1/contexts. The response index (rhetor.context.responses) maps a response id to its context and how many
of that context's messages it reaches.

Continuing from the newest response of a context appends to that context; continuing from an older one forks:
a new context starts with the conversation up to that response. `x-rhetor-context-id` (without
`previous_response_id`) continues that context's stored conversation.

Semantic recall: when the stored conversation overflows the primary target's window (and memory is on), what is
sent is chosen by the same `Memory.window` native contexts use — the recent turns plus the older turns most
relevant to the new input — and rebuilt from the stored items of those whole turns (function calls with their
outputs); a call and its output are kept or dropped together (rhetor.context.window.paired). A fork sends its
carried history whole (the gateway trims it to the window): its new context has nothing indexed yet.
Knows the gateway, the store and the index; nothing of HTTP framing or providers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rhetor.api.openai.wire import Item, item_text, message_item, to_messages
from rhetor.context.responses import ResponseIndex, StoredResponse
from rhetor.context.retrieval import Recall
from rhetor.context.store import NewMessage, StoredMessage
from rhetor.context.window import message_tokens
from rhetor.errors import InvalidRequestError, ResponseNotFoundError
from rhetor.gateway import ChatInput, Gateway
from rhetor.providers.base import estimate_tokens


@dataclass(slots=True)
class Conversation:
    context_id: str
    prior: list[Item] = field(default_factory=list)
    carry: list[StoredMessage] = field(default_factory=list)  # a fork's history, copied into the new context
    stored: list[StoredMessage] = field(default_factory=list)  # the complete stored messages `prior` comes from


def _items_of(messages: list[StoredMessage]) -> list[Item]:
    items: list[Item] = []
    for m in messages:
        if m.metadata.get("status") != "complete":
            continue
        item = m.metadata.get("item")
        if isinstance(item, dict) and "type" in item:
            items.append(item)
        elif m.role in ("user", "assistant", "system"):  # a turn another front recorded in the same context
            items.append(message_item(m.role, m.content, f"msg_ctx{m.id}"))
    return items


async def stored_response(gw: Gateway, index: ResponseIndex, response_id: str, param: str) -> StoredResponse:
    """The stored response `response_id`, or a 404 naming `param` (also when its context was deleted)."""
    found = await index.get(response_id)
    if found is None or await gw.store.get_summary(found.context_id) is None:
        raise ResponseNotFoundError(f"{param}: no stored response with id {response_id!r}", param=param)
    return found


async def load(gw: Gateway, index: ResponseIndex, previous_id: str | None, header_context: str | None,
               new_context: str) -> Conversation:
    """The conversation a new response continues (empty for a fresh one), and the context it is recorded in."""
    if previous_id is not None:
        prev = await stored_response(gw, index, previous_id, "previous_response_id")
        if header_context is not None and header_context != prev.context_id:
            raise InvalidRequestError(f"x-rhetor-context-id {header_context!r} differs from the context of "
                                      f"previous_response_id ({prev.context_id!r}); send one or the other",
                                      param="x-rhetor-context-id")
        messages, total = await gw.store.page(prev.context_id, offset=0, limit=prev.message_count)
        kept = [m for m in messages if m.metadata.get("status") == "complete"]
        if total > prev.message_count:  # an older response: fork into a new context
            return Conversation(new_context, _items_of(kept), kept)
        return Conversation(prev.context_id, _items_of(kept), stored=kept)
    if header_context is not None:
        stored = await gw.store.history(header_context)
        return Conversation(header_context, _items_of(stored), stored=stored)
    return Conversation(new_context)


async def recall(gw: Gateway, inp: ChatInput, convo: Conversation, new_items: list[Item],
                 system: str | None) -> tuple[list[Item], Recall] | None:
    """The stored items to send instead of the whole `convo.prior` when it overflows the primary target's room,
    and what memory brought back; None when it fits (or memory is off, or this is a fork)."""
    if gw.memory is None or convo.carry or not convo.stored:
        return None
    new, _ = to_messages(new_items)
    fixed = sum(message_tokens(m) for m in new) + (estimate_tokens(system) if system else 0)
    room, load = await gw.prompt_room(inp, fixed)
    prior, _ = to_messages(convo.prior)
    if sum(message_tokens(m) for m in prior) <= room:
        return None
    query = " ".join(m.content for m in new if m.role == "user") or " ".join(m.content for m in new)
    _, found = await gw.memory.window(convo.context_id, query or " ", room_tokens=room, load_tokens=load)
    if found is None:
        return None
    keep = set(found.ids)
    turns = {m.metadata.get("response_id") for m in convo.stored if m.id in keep} - {None}
    chosen = [m for m in convo.stored if m.id in keep or m.metadata.get("response_id") in turns]
    return _items_of(chosen), found


def _message(item: Item, response_id: str) -> NewMessage:
    kind = item["type"]
    role = ("assistant" if item["role"] == "assistant" else "user" if item["role"] == "user" else "system"
            ) if kind == "message" else "assistant" if kind == "function_call" else "tool"
    return NewMessage(role, item_text(item), {"item": item, "response_id": response_id})


async def record(gw: Gateway, index: ResponseIndex, convo: Conversation, response_id: str, new_items: list[Item],
                 output: list[Item], response: dict[str, Any] | None, status: str) -> None:
    """Store the turn (status "complete", "error" or "cancelled"); a complete one is indexed for GET and
    `previous_response_id`."""
    turn = [_message(item, response_id) for item in [*new_items, *output]]
    if not turn:
        return
    store = gw.store
    if status != "complete":
        await store.append_turn(convo.context_id, turn, status=status)
        return
    if convo.carry:
        await store.append_turn(convo.context_id, [
            NewMessage(m.role, m.content, {k: v for k, v in m.metadata.items() if k != "status"})
            for m in convo.carry])
    await store.append_turn(convo.context_id, turn)
    summary = await store.get_summary(convo.context_id)
    count = summary.message_count if summary is not None else len(turn)
    assert response is not None
    await index.put(StoredResponse(response_id, convo.context_id, count, response, new_items))
    if gw.memory is not None:
        gw.memory.notify()  # the indexer embeds the turn in the background


__all__ = ["Conversation", "load", "recall", "record", "stored_response"]
