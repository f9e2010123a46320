"""Model clients: one interface, three backends chosen by LLM_BACKEND.

- `openai`: chat completions on vLLM or any OpenAI-compatible server (instruction-tuned model).
- `llamacpp`: completion-style few-shot prompt against llama.cpp's OpenAI-compatible server, for
  base models without a chat template (the packaged Gemma 3 270M).
- `extractive`: no model (`get_llm` returns None); grounding.extractive_answer answers instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, TypeVar

from django.conf import settings

from .prompt import Passage, Turn, chat_messages, completion_prompt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from openai import OpenAI

_T = TypeVar("_T")
_Choice_co = TypeVar("_Choice_co", covariant=True)


@dataclass(frozen=True)
class Generation:
    text: str
    backend: str
    model: str
    refused: bool = False


class GenerationError(Exception):
    """The model server failed or its output cannot be shown; the caller falls back."""


class LLM(Protocol):
    backend: str
    model: str

    def stream(
        self, *, question: str, passages: list[Passage], history: list[Turn]
    ) -> Iterator[str]:
        """Text deltas of the answer; raises GenerationError when the server fails."""
        ...


class _Chunk(Protocol[_Choice_co]):
    """A streamed chunk of either endpoint: its choices carry the text."""

    @property
    def choices(self) -> Sequence[_Choice_co]: ...


def _client() -> OpenAI:
    from openai import OpenAI

    # The client's own retries would also retry timeouts and server errors; Attest retries
    # connection failures only (below), so a slow model is reported within LLM_TIMEOUT.
    return OpenAI(
        base_url=settings.LLM_BASE_URL,
        api_key=settings.LLM_API_KEY or "not-needed",
        timeout=settings.LLM_TIMEOUT,
        max_retries=0,
    )


def _open_stream(create: Callable[[], _T]) -> _T:
    """Call `create()` (a streaming request), retrying connection errors with backoff."""
    import openai

    attempts = settings.LLM_MAX_RETRIES + 1
    for attempt in range(attempts):
        try:
            return create()
        except openai.APITimeoutError as exc:
            raise GenerationError(
                f"the model server did not answer within {settings.LLM_TIMEOUT:g} s"
            ) from exc
        except openai.APIConnectionError as exc:
            if attempt + 1 >= attempts:
                raise GenerationError(f"cannot reach the model server ({exc})") from exc
            time.sleep(min(4.0, 0.25 * 2**attempt))
        except openai.OpenAIError as exc:
            raise GenerationError(f"model server error: {type(exc).__name__}: {exc}") from exc
    raise GenerationError("unreachable")  # pragma: no cover


def _deltas(
    stream: Iterable[_Chunk[_Choice_co]], pick: Callable[[_Choice_co], str | None]
) -> Iterator[str]:
    import openai

    try:
        for chunk in stream:
            if not chunk.choices:
                continue
            text = pick(chunk.choices[0])
            if text:
                yield text
    except openai.APITimeoutError as exc:
        raise GenerationError(
            f"the model server stopped answering ({settings.LLM_TIMEOUT:g} s)"
        ) from exc
    except openai.OpenAIError as exc:
        raise GenerationError(f"model server error while streaming: {exc}") from exc
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


class OpenAIChatLLM:
    backend = "openai"

    def __init__(self) -> None:
        self.client = _client()
        self.model = settings.LLM_MODEL

    def stream(
        self, *, question: str, passages: list[Passage], history: list[Turn]
    ) -> Iterator[str]:
        stream = _open_stream(
            lambda: self.client.chat.completions.create(
                model=self.model,
                messages=chat_messages(question, passages, history),
                temperature=settings.LLM_TEMPERATURE,
                max_tokens=settings.LLM_MAX_TOKENS,
                stream=True,
            )
        )
        yield from _deltas(stream, lambda choice: choice.delta.content if choice.delta else "")


class LlamaCppCompletionLLM:
    backend = "llamacpp"

    def __init__(self) -> None:
        self.client = _client()
        self.model = settings.LLM_MODEL

    def stream(
        self, *, question: str, passages: list[Passage], history: list[Turn]
    ) -> Iterator[str]:
        stream = _open_stream(
            lambda: self.client.completions.create(
                model=self.model,
                prompt=completion_prompt(question, passages, history=history),
                temperature=settings.LLM_TEMPERATURE,
                max_tokens=min(settings.LLM_MAX_TOKENS, 128),
                stop=["\n"],
                stream=True,
            )
        )
        yield from _deltas(stream, lambda choice: choice.text)


@lru_cache(maxsize=1)
def get_llm() -> LLM | None:
    """The configured model backend, or None for `extractive` (no model)."""
    match settings.LLM_BACKEND:
        case "openai":
            return OpenAIChatLLM()
        case "llamacpp":
            return LlamaCppCompletionLLM()
        case _:
            return None
