"""Fitting a prompt into the model's window with room for the answer.

Instructions and the question always go; the earlier turn goes when it leaves room for the
best passage; passages go in rank order until the next one would not fit, so the lowest-ranked
are dropped first. The answer keeps `LLM_MAX_TOKENS` tokens, or half the window when that is
smaller, and the request asks for no more than what is left: a server never sees a request it
must refuse for length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import model_server

# The chat template's own tokens: role headers and end-of-turn markers per message, and a
# preamble (BOS, Llama 3.1's date lines, a generation prompt such as R1's "<think>\n").
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS = 48
# Texts are counted one by one; their tokens joined can differ slightly from the sum.
SAFETY_SHARE = 0.02


@dataclass(frozen=True)
class Fit:
    kept: int  # passages 1..kept go to the model
    dropped: list[int] = field(default_factory=list)  # numbers of the passages left out
    history: bool = True  # whether the earlier turn goes
    # The prompt's tokens at most: its texts (counted by the server's tokenizer when `exact`,
    # else bounded by their bytes or estimated) and the template's own, with a margin.
    prompt_tokens: int = 0
    max_tokens: int = 0  # what the request may generate
    context_tokens: int = 0
    exact: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "context_tokens": self.context_tokens,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_exact": self.exact,
            "max_tokens": self.max_tokens,
            "history_sent": self.history,
            "passages_sent": self.kept,
            "passages_dropped": self.dropped,
        }


def _overhead(model: str, messages: int) -> int:
    """The template's tokens for `messages` chat messages: measured on the server for one
    message and counted again for each (a generous bound: the preamble is counted each time),
    or the allowance above, whichever is larger. 0 messages: a raw completion prompt."""
    allowance = TEMPLATE_TOKENS + TEMPLATE_TOKENS_PER_MESSAGE * messages
    if not messages:
        return allowance
    return max(allowance, model_server.template_tokens(model) * messages)


def fit_prompt(
    *,
    model: str,
    fixed: list[str],
    history: list[str],
    passages: list[str],
    messages: int,
    max_tokens: int,
) -> Fit:
    """Which passages (in rank order) and whether the history fit with the answer's room.

    `fixed` are the texts that always go (instructions, question), `passages` the passage
    texts as the prompt carries them, `messages` the number of chat messages (0 for a
    completion prompt). `kept == 0` means not even the best passage fits."""
    window = model_server.context_tokens(model)
    overhead = _overhead(model, messages) + int(window * SAFETY_SHARE)
    texts = [*fixed, *history, *passages]
    # Every token covers at least one byte, so a prompt whose bytes fit needs no counting.
    upper = sum(len(t.encode("utf-8")) for t in texts)
    if upper + overhead + max_tokens <= window:
        return Fit(
            kept=len(passages),
            prompt_tokens=upper + overhead,
            max_tokens=max_tokens,
            context_tokens=window,
        )
    counts, exact = model_server.count_tokens(texts, model=model)
    fixed_n = sum(counts[: len(fixed)])
    history_n = sum(counts[len(fixed) : len(fixed) + len(history)])
    passage_n = counts[len(fixed) + len(history) :]
    budget = window - overhead - min(max_tokens, window // 2)
    used = fixed_n
    with_history = bool(history) and (
        fixed_n + history_n + (passage_n[0] if passage_n else 0) <= budget
    )
    if with_history:
        used += history_n
    kept = 0
    for count in passage_n:
        if used + count > budget:
            break
        used += count
        kept += 1
    return Fit(
        kept=kept,
        dropped=list(range(kept + 1, len(passages) + 1)),
        history=with_history or not history,
        prompt_tokens=used + overhead,
        max_tokens=max(0, min(max_tokens, window - overhead - used)),
        context_tokens=window,
        exact=exact,
    )
