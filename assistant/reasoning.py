"""Telling a reasoning model's thinking from its answer, as the stream arrives.

An R1-style model writes `<think>...</think>` before its answer. Served with a reasoning parser
(vLLM `--reasoning-parser deepseek_r1`, llama.cpp `--reasoning-format deepseek`) the thinking
arrives in its own field (`reasoning_content`, or `reasoning` in newer vLLM) and is reasoning
whatever the mode. Served without one, it arrives in `content`, and `LLM_THINKING` says how to
read it:

- `open`: the model thinks first and the chat template may already have opened the block in
  the prompt (DeepSeek-R1 distills' templates end with `<think>`), so everything before
  `</think>` is reasoning, with or without an opening tag;
- `tags`: only a block that opens with `<think>` at the start of the answer is reasoning; a
  `</think>` with no opening tag means the template opened it, so the text before it is taken
  back (`retract`) and kept as reasoning;
- `off`: `content` is all answer;
- `auto` (default): `open` for models whose name says they reason (`R1`, `QwQ`, `think`,
  `reason`), else `tags`.

Nothing here talks to a server: `ThinkSplitter` is fed text and says which part is which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

OPEN, CLOSE = "<think>", "</think>"
Kind = Literal["answer", "reasoning", "retract"]

_REASONER = re.compile(r"(?:^|[^a-z0-9])r1(?:$|[^a-z0-9])|qwq|think|reason", re.IGNORECASE)


def reasoning_model(model: str) -> bool:
    """Whether the model's name says it thinks before answering (DeepSeek-R1 and its
    distills, QwQ, "-Thinking" and "-Reasoning" releases)."""
    return bool(_REASONER.search(model.rsplit("/", 1)[-1]))


def thinking_mode(setting: str, model: str) -> str:
    """`LLM_THINKING` resolved for `model`: open, tags or off."""
    if setting == "auto":
        return "open" if reasoning_model(model) else "tags"
    return setting


@dataclass(frozen=True)
class Piece:
    kind: Kind
    text: str = ""


def _held_prefix(text: str, tag: str) -> int:
    """How many characters at the end of `text` could be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    """Splits a model's output into reasoning and answer pieces, keeping back any tail that
    could be the start of a tag until the next text decides it."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        # "start": nothing decided yet; "reasoning": inside the block; "answer": after it.
        self.state = "reasoning" if mode == "open" else ("answer" if mode == "off" else "start")
        self.pending = ""
        self.answer_seen = ""  # answer text given out so far (a `tags` retract takes it back)
        self.server_reasoning = False

    def reasoning_field(self, text: str) -> list[Piece]:
        """Text from the server's own reasoning field: the server parses, so `content` is all
        answer from here on."""
        self.server_reasoning = True
        if self.state in {"start", "reasoning"} and not self.pending.strip():
            self.state, self.pending = "answer", ""
        return [Piece("reasoning", text)] if text else []

    def content(self, text: str) -> list[Piece]:
        self.pending += text
        pieces: list[Piece] = []
        while self.pending:
            before = (self.state, len(self.pending))
            pieces += self._step()
            if (self.state, len(self.pending)) == before:
                break  # waiting for more text
        return [p for p in pieces if p.text or p.kind == "retract"]

    def finish(self) -> list[Piece]:
        """The stream ended: what is still held back is given out for what it most likely is."""
        text, self.pending = self.pending, ""
        if not text:
            return []
        if self.state == "reasoning":
            return [Piece("reasoning", text)]
        return [Piece("answer", text)]

    @property
    def in_reasoning(self) -> bool:
        return self.state == "reasoning" or (self.state == "start" and self.mode == "open")

    def _step(self) -> list[Piece]:
        if self.state == "start":
            stripped = self.pending.lstrip()
            if stripped.startswith(OPEN):
                self.pending = stripped[len(OPEN) :]
                self.state = "reasoning"
                return []
            if OPEN.startswith(stripped):
                return []  # could still become <think>
            self.state = "answer"
            return []
        if self.state == "reasoning":
            if self.mode == "open" and self.pending.lstrip().startswith(OPEN):
                self.pending = self.pending.lstrip()[len(OPEN) :]
            end = self.pending.find(CLOSE)
            if end >= 0:
                thought, self.pending = self.pending[:end], self.pending[end + len(CLOSE) :]
                self.pending = self.pending.lstrip()
                self.state = "answer"
                return [Piece("reasoning", thought)]
            keep = _held_prefix(self.pending, CLOSE)
            thought = self.pending[: len(self.pending) - keep]
            self.pending = self.pending[len(self.pending) - keep :]
            return [Piece("reasoning", thought)] if thought else []
        # answer
        if not self.answer_seen:
            self.pending = self.pending.lstrip()  # the blank line after </think>
        if self.mode == "tags" and not self.server_reasoning:
            end = self.pending.find(CLOSE)
            if end >= 0:
                # The template opened the block in the prompt: what was shown was thinking.
                thought = self.answer_seen + self.pending[:end]
                self.pending = self.pending[end + len(CLOSE) :].lstrip()
                self.answer_seen = ""
                return [Piece("retract"), Piece("reasoning", thought)]
            keep = _held_prefix(self.pending, CLOSE)
        else:
            keep = 0
        text = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        self.answer_seen += text
        return [Piece("answer", text)] if text else []
