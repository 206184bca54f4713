"""Pure context-window trimming: what history fits in front of the current turn, and the prompt budget."""

from __future__ import annotations

from rhetor.context import StoredMessage, as_messages, budget_for, fit_history, message_tokens
from rhetor.context.window import MESSAGE_OVERHEAD_TOKENS
from rhetor.providers.base import estimate_tokens
from rhetor.types import Message


def u(text: str) -> Message:
    return Message("user", text)


def a(text: str) -> Message:
    return Message("assistant", text)


def cost(msgs: list[Message]) -> int:
    return sum(message_tokens(m) for m in msgs)


# Each content of 40 characters is 10 estimated tokens, plus the per-message overhead.
H = [u("u1" * 20), a("a1" * 20), u("u2" * 20), a("a2" * 20), u("u3" * 20), a("a3" * 20)]
NEW = [u("now" * 4)]
PER = 10 + MESSAGE_OVERHEAD_TOKENS


def test_message_tokens_uses_the_shared_estimate() -> None:
    assert message_tokens(u("x" * 40)) == estimate_tokens("x" * 40) + MESSAGE_OVERHEAD_TOKENS == PER


def test_everything_fits() -> None:
    assert fit_history(H, NEW, budget_tokens=10_000) == [*H, *NEW]


def test_no_history() -> None:
    assert fit_history([], NEW, budget_tokens=10_000) == NEW


def test_drops_oldest_first() -> None:
    budget = cost(NEW) + 4 * PER
    assert fit_history(H, NEW, budget_tokens=budget) == [*H[2:], *NEW]


def test_never_starts_with_an_assistant_message() -> None:
    budget = cost(NEW) + 3 * PER  # the last three are a2, u3, a3: a2 must go
    kept = fit_history(H, NEW, budget_tokens=budget)
    assert kept == [*H[4:], *NEW]
    assert kept[0].role == "user"


def test_just_under_the_boundary_drops_one_more() -> None:
    budget = cost(NEW) + 4 * PER - 1
    assert fit_history(H, NEW, budget_tokens=budget) == [*H[4:], *NEW]


def test_the_system_prompt_counts() -> None:
    system = "s" * 80  # 20 tokens: pushes out more than one 14-token message
    budget = cost(NEW) + 4 * PER
    assert fit_history(H, NEW, budget_tokens=budget, system=system) == [*H[4:], *NEW]
    assert fit_history(H, NEW, budget_tokens=budget, system="") == [*H[2:], *NEW]


def test_the_current_turn_is_always_kept_even_over_budget() -> None:
    big = [u("z" * 4000), a("prefill"), u("and this")]
    assert fit_history(H, big, budget_tokens=10) == big
    assert fit_history(H, NEW, budget_tokens=0, system="x" * 1000) == NEW


def test_history_is_a_contiguous_tail() -> None:
    # A huge middle message stops the walk; an older small one behind it is not sneaked in.
    hist = [u("old"), a("tiny"), u("H" * 4000), a("recent")]
    kept = fit_history(hist, NEW, budget_tokens=cost(NEW) + 100)
    assert kept == NEW  # "recent" fits but is an assistant opener, so it goes too
    hist2 = [u("old"), a("H" * 4000), u("q"), a("recent")]
    assert fit_history(hist2, NEW, budget_tokens=cost(NEW) + 100) == [u("q"), a("recent"), *NEW]


def test_inputs_are_not_mutated() -> None:
    hist = list(H)
    new = list(NEW)
    fit_history(hist, new, budget_tokens=cost(NEW) + PER)
    assert hist == H and new == NEW


def test_budget_for() -> None:
    assert budget_for(200_000, 4096) == 200_000 - 4096 - 10_000
    assert budget_for(8192, None) == 8192 - 1024 - 409
    assert budget_for(8192, 0) == 8192 - 1024 - 409  # 0 means "unspecified", like None
    assert budget_for(2048, 4000) == 256  # floor
    assert budget_for(0, None) == 256


def test_as_messages_keeps_model_roles_only() -> None:
    stored = [
        StoredMessage(1, "user", "q", "2024-01-01T00:00:00+00:00", {"status": "complete"}),
        StoredMessage(2, "tool", "note", "2024-01-01T00:00:01+00:00", {}),
        StoredMessage(3, "assistant", "r", "2024-01-01T00:00:02+00:00", {}),
    ]
    assert as_messages(stored) == [u("q"), a("r")]
