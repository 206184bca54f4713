"""Window trimming (rhetor.context.window) never separates an assistant's tool calls from the tool results that
answer them, counts tool calls and images, and never changes the caller's new turn."""

from __future__ import annotations

from rhetor.context.window import IMAGE_TOKENS, fit_history, message_tokens, paired
from rhetor.types import Image, Message, ToolCall


def call(cid: str) -> Message:
    return Message("assistant", "", tool_calls=[ToolCall(cid, "get_weather", '{"city": "Paris"}')])


def result(cid: str) -> Message:
    return Message("tool", "18C " * 40, tool_call_id=cid)


HISTORY = [Message("user", "old question " * 10), call("a"), result("a"), Message("assistant", "old answer " * 10),
           Message("user", "what next?"), call("b"), result("b"), Message("assistant", "done")]


def test_a_call_and_its_result_are_kept_or_dropped_together() -> None:
    new = [Message("user", "hi")]
    for budget in range(0, 600, 5):
        sent = fit_history(HISTORY, new, budget_tokens=budget)
        calls = [c.id for m in sent for c in m.tool_calls or []]
        results = [m.tool_call_id for m in sent if m.role == "tool"]
        assert calls == results, budget
        assert sent[0].role == "user" and sent[-1] is new[0]


def test_a_budget_that_would_cut_between_call_and_result_drops_both() -> None:
    new = [Message("user", "hi")]
    tail_cost = sum(message_tokens(m) for m in HISTORY[6:]) + message_tokens(new[0])
    sent = fit_history(HISTORY, new, budget_tokens=tail_cost + 1)  # room for result b + answer, not call b
    assert all(m.role != "tool" for m in sent) and not any(m.tool_calls for m in sent)


def test_tool_results_in_the_new_turn_keep_the_exchange_they_answer() -> None:
    history = HISTORY[:6]  # ... user "what next?", assistant calling b
    new = [result("b")]
    sent = fit_history(history, new, budget_tokens=1)
    assert [m.role for m in sent] == ["user", "assistant", "tool"] and sent[1].tool_calls is not None
    assert sent[-1] is new[0]


def test_orphans_are_dropped_from_history_but_never_from_the_new_turn() -> None:
    out = paired([result("x"), Message("user", "q"), call("y"), Message("assistant", "a")])
    assert [m.role for m in out] == ["user", "assistant"] and out[1].content == "a"
    new = [result("z")]
    assert paired([Message("user", "q"), *new], keep_last=1)[-1] is new[0]  # the vendor's to refuse


def test_tool_calls_and_images_are_counted() -> None:
    text = Message("user", "look")
    assert message_tokens(Message("user", "look", images=[Image(url="https://x.test/a.png")] * 2)) == \
        message_tokens(text) + 2 * IMAGE_TOKENS
    assert message_tokens(call("a")) > message_tokens(Message("assistant", ""))
