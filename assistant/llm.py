"""Model clients: one interface, three backends chosen by LLM_BACKEND.

- `openai`: chat completions on vLLM or any OpenAI-compatible server (instruction-tuned or
  reasoning model; see docs/models.md).
- `llamacpp`: completion-style few-shot prompt against llama.cpp's OpenAI-compatible server, for
  base models without a chat template (the packaged Gemma 3 270M).
- `extractive`: no model (`get_llm` returns None); grounding.extractive_answer answers instead.

A call is prepared (`prepare`: the prompt fitted into the model's window) and then streamed
(`stream`: `Piece`s of answer and of reasoning, never mixed; `Outcome` says how it ended).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from django.conf import settings

from . import model_server, prompt
from .fitting import Fit, fit_prompt
from .reasoning import Piece, ThinkSplitter, reasoning_model, thinking_mode

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from openai import OpenAI

    from .prompt import Passage, Turn

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_Choice_co = TypeVar("_Choice_co", covariant=True)

REASONING_MAX_TOKENS = 4096  # default LLM_MAX_TOKENS for a model that thinks first
ANSWER_MAX_TOKENS = 512  # default LLM_MAX_TOKENS otherwise


class GenerationError(Exception):
    """The model server failed or its output cannot be shown; the caller falls back."""


@dataclass(frozen=True)
class Request:
    """One prepared call: the passages and history that fit, and the room for the answer."""

    question: str
    passages: list[Passage]
    history: list[Turn]
    fit: Fit


@dataclass
class Outcome:
    """How a streamed call ended, filled in while it streams."""

    finish_reason: str = ""
    model: str = ""  # the model name the server put on its replies
    system_fingerprint: str = ""
    system_as: str = "system"  # how the instructions went: a system message or the user turn
    served: dict[str, Any] = field(default_factory=dict)


class LLM(Protocol):
    backend: str
    model: str

    def prepare(self, *, question: str, passages: list[Passage], history: list[Turn]) -> Request:
        """Fit the prompt into the model's window; raises GenerationError when even the best
        passage does not fit."""
        ...

    def stream(self, request: Request, outcome: Outcome) -> Iterator[Piece]:
        """Answer and reasoning pieces; raises GenerationError when the server fails."""
        ...


class _Chunk(Protocol[_Choice_co]):
    """A streamed chunk of either endpoint: its choices carry the text."""

    @property
    def choices(self) -> Sequence[_Choice_co]: ...


def max_tokens(model: str) -> int:
    """LLM_MAX_TOKENS, or its default: room to think for a reasoning model, else an answer's."""
    if settings.LLM_MAX_TOKENS:
        return int(settings.LLM_MAX_TOKENS)
    thinks = thinking_mode(settings.LLM_THINKING, model) == "open" or reasoning_model(model)
    return REASONING_MAX_TOKENS if thinks else ANSWER_MAX_TOKENS


def stop_sequences(backend: str) -> list[str]:
    """LLM_STOP, or the backend's own: none for chat (the template's end of turn ends the
    answer, and servers match stop strings on reasoning too), a newline for the one-line
    completion prompt."""
    if settings.LLM_STOP is not None:
        return list(settings.LLM_STOP)
    return ["\n"] if backend == "llamacpp" else []


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
    """Call `create()` (a streaming request), retrying connection errors with backoff.

    A refusal of the request itself (400/422, e.g. a chat template's) is raised as is, for the
    caller to read; every other failure becomes a GenerationError."""
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
        except (openai.BadRequestError, openai.UnprocessableEntityError):
            raise
        except openai.OpenAIError as exc:
            raise GenerationError(f"model server error: {type(exc).__name__}: {exc}") from exc
    raise GenerationError("unreachable")  # pragma: no cover


def _chunks(stream: Iterable[_Chunk[_Choice_co]]) -> Iterator[_Chunk[_Choice_co]]:
    import openai

    try:
        yield from stream
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


def _refuses_system_role(exc: Exception) -> bool:
    """Whether a refused request reads as a chat template rejecting the system message."""
    text = str(exc).lower()
    return any(
        words in text
        for words in ("roles must alternate", "system role", "system message", "system prompt")
    )


def _note(outcome: Outcome, chunk: Any) -> None:
    outcome.model = getattr(chunk, "model", "") or outcome.model
    outcome.system_fingerprint = getattr(chunk, "system_fingerprint", "") or ""
    choice = chunk.choices[0] if chunk.choices else None
    if choice is not None and getattr(choice, "finish_reason", None):
        outcome.finish_reason = str(choice.finish_reason)


def _prepared(
    model: str,
    question: str,
    passages: list[Passage],
    history: list[Turn],
    *,
    fixed: list[str],
    history_texts: list[str],
    passage_texts: list[str],
    messages: int,
) -> Request:
    fit = fit_prompt(
        model=model,
        fixed=fixed,
        history=history_texts,
        passages=passage_texts,
        messages=messages,
        max_tokens=max_tokens(model),
    )
    if fit.kept == 0 or fit.max_tokens <= 0:
        raise GenerationError(
            f"the question and instructions leave no room for a passage and the answer in the "
            f"model's {fit.context_tokens}-token window"
        )
    return Request(
        question=question,
        passages=passages[: fit.kept],
        history=history if fit.history else [],
        fit=fit,
    )


class OpenAIChatLLM:
    backend = "openai"

    def __init__(self) -> None:
        self.client = _client()
        self.model = settings.LLM_MODEL

    def _system_as_user(self) -> bool:
        if settings.LLM_SYSTEM_ROLE == "user":
            return True
        return settings.LLM_SYSTEM_ROLE == "auto" and model_server.system_role_refused(self.model)

    def prepare(self, *, question: str, passages: list[Passage], history: list[Turn]) -> Request:
        # Counted as the longer of its two forms (a system message, or folded into the user turn).
        system = "Instructions: " + prompt.SYSTEM_PROMPT + "\n\n"
        history_texts = [
            text
            for turn in history
            for text in (f"Question: {prompt.inert(turn.question)}", prompt.inert(turn.answer))
        ]
        return _prepared(
            self.model,
            question,
            passages,
            history,
            fixed=[system, "Passages:\n\n", "\n\n" + prompt.question_text(question)],
            history_texts=history_texts,
            passage_texts=[prompt.passage_block(p) + "\n\n" for p in passages],
            messages=2 + 2 * len(history),
        )

    def _create(self, request: Request, *, system_as_user: bool) -> Any:
        extra: dict[str, Any] = {}
        stop = stop_sequences(self.backend)
        if stop:
            extra["stop"] = stop
        return self.client.chat.completions.create(
            model=self.model,
            messages=prompt.chat_messages(
                request.question,
                request.passages,
                request.history,
                system_as_user=system_as_user,
            ),
            temperature=settings.LLM_TEMPERATURE,
            max_tokens=request.fit.max_tokens,
            stream=True,
            **extra,
        )

    def _open(self, request: Request, outcome: Outcome) -> Any:
        import openai

        system_as_user = self._system_as_user()
        try:
            stream = _open_stream(lambda: self._create(request, system_as_user=system_as_user))
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if (
                system_as_user
                or settings.LLM_SYSTEM_ROLE != "auto"
                or not _refuses_system_role(exc)
            ):
                raise GenerationError(f"the model server refused the request: {exc}") from exc
            # The chat template rejects a system message (several Mistral Instruct templates):
            # remember it for this server and model, and ask again with the instructions in the
            # first user turn.
            logger.warning("%s refuses a system message; folding it into the user turn", self.model)
            model_server.remember_system_role_refused(self.model)
            system_as_user = True
            try:
                stream = _open_stream(lambda: self._create(request, system_as_user=True))
            except (openai.BadRequestError, openai.UnprocessableEntityError) as again:
                raise GenerationError(f"the model server refused the request: {again}") from again
        outcome.system_as = "user" if system_as_user else "system"
        return stream

    def stream(self, request: Request, outcome: Outcome) -> Iterator[Piece]:
        outcome.served = model_server.served_model(self.model).as_dict()
        splitter = ThinkSplitter(thinking_mode(settings.LLM_THINKING, self.model))
        for chunk in _chunks(self._open(request, outcome)):
            _note(outcome, chunk)
            if not chunk.choices or chunk.choices[0].delta is None:
                continue
            delta = chunk.choices[0].delta
            # vLLM (before 0.10: reasoning_content, later: reasoning), llama.cpp
            # (reasoning_content): the server's reasoning parser separated the thinking.
            thought = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
            if thought:
                yield from splitter.reasoning_field(str(thought))
            if delta.content:
                yield from splitter.content(delta.content)
        yield from splitter.finish()


class LlamaCppCompletionLLM:
    backend = "llamacpp"

    def __init__(self) -> None:
        self.client = _client()
        self.model = settings.LLM_MODEL

    def prepare(self, *, question: str, passages: list[Passage], history: list[Turn]) -> Request:
        head = prompt.completion_prompt(question, [], history=history)
        return _prepared(
            self.model,
            question,
            passages,
            history,
            fixed=[head],
            history_texts=[],
            passage_texts=[line + "\n" for line in prompt.completion_lines(passages)],
            messages=0,
        )

    def stream(self, request: Request, outcome: Outcome) -> Iterator[Piece]:
        import openai

        outcome.served = model_server.served_model(self.model).as_dict()
        outcome.system_as = "prompt"  # a completion prompt has no roles
        try:
            stream = _open_stream(
                lambda: self.client.completions.create(
                    model=self.model,
                    prompt=prompt.completion_prompt(
                        request.question, request.passages, history=request.history
                    ),
                    temperature=settings.LLM_TEMPERATURE,
                    max_tokens=min(request.fit.max_tokens, 128),
                    stop=stop_sequences(self.backend) or None,
                    stream=True,
                )
            )
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            raise GenerationError(f"the model server refused the request: {exc}") from exc
        for chunk in _chunks(stream):
            _note(outcome, chunk)
            if chunk.choices and chunk.choices[0].text:
                yield Piece("answer", chunk.choices[0].text)


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
