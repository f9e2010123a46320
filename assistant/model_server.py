"""What the model server says about itself: the served model's window, exact name and
revision (`/v1/models`, vLLM's `/version`, llama.cpp's `/props`), and token counts
(`/tokenize`, which both vLLM and llama.cpp serve beside `/v1`).

Answers are cached per process for `TTL` seconds, so a question costs no extra round trip and
a restarted server with a new `--max-model-len` is noticed within minutes. Nothing here is
required: a server that answers none of it gets `LLM_CONTEXT_TOKENS` and estimated counts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

TTL = 300.0
# Without the server's tokenizer, a token is counted as 2 bytes of UTF-8: English BPE runs at
# about 4 to 5 bytes a token, so this leaves room for denser text (numbers, code, accents).
BYTES_PER_TOKEN_ESTIMATE = 2
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})\b")


@dataclass(frozen=True)
class ServedModel:
    """The model as the server reports it (empty where it reports nothing)."""

    id: str = ""
    root: str = ""  # vLLM: the weights it loaded (an HF id, or a path naming the snapshot)
    revision: str = ""  # the snapshot commit, when `root` names one
    owned_by: str = ""
    context_tokens: int = 0  # the server's window for this model (0: not reported)
    server: str = ""  # "vllm 0.11.0", "llama.cpp b6123"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_lock = threading.Lock()
_models: dict[tuple[str, str], tuple[float, ServedModel]] = {}
_tokenize_missing: dict[str, float] = {}
MAX_COUNTS = 4096
_counts: OrderedDict[tuple[str, str, str], int] = OrderedDict()
_system_refused: set[tuple[str, str]] = set()


def _root_url() -> str:
    base = settings.LLM_BASE_URL.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _http() -> httpx.Client:
    import httpx

    return httpx.Client(
        timeout=min(10.0, settings.LLM_TIMEOUT),
        headers={"Authorization": f"Bearer {settings.LLM_API_KEY or 'not-needed'}"},
    )


def _window(entry: dict[str, Any]) -> int:
    """The context window an entry of /v1/models reports: vLLM `max_model_len`, llama.cpp
    `meta.n_ctx`, others `context_length` or `context_window`."""
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    for value in (
        entry.get("max_model_len"),
        meta.get("n_ctx") if meta else None,
        entry.get("context_length"),
        entry.get("context_window"),
    ):
        if isinstance(value, int) and value > 0:
            return value
    return 0


def _server_version(client: httpx.Client, root: str) -> str:
    import httpx

    try:
        response = client.get(f"{root}/version")
        if response.status_code == 200 and "version" in response.json():
            return f"vllm {response.json()['version']}"
        response = client.get(f"{root}/props")
        if response.status_code == 200 and "build_info" in response.json():
            return f"llama.cpp {response.json()['build_info']}"
    except (httpx.HTTPError, ValueError):
        pass
    return ""


def _fetch(model: str) -> ServedModel:
    import httpx

    root = _root_url()
    try:
        with _http() as client:
            response = client.get(f"{settings.LLM_BASE_URL.rstrip('/')}/models")
            response.raise_for_status()
            entries = response.json().get("data") or []
            entry = next((e for e in entries if e.get("id") == model), None)
            if entry is None and len(entries) == 1:
                entry = entries[0]
            if entry is None:
                return ServedModel()
            name = str(entry.get("root") or "")
            snapshot = _SNAPSHOT.search(name)
            return ServedModel(
                id=str(entry.get("id") or ""),
                root=name,
                revision=snapshot.group(1) if snapshot else "",
                owned_by=str(entry.get("owned_by") or ""),
                context_tokens=_window(entry),
                server=_server_version(client, root),
            )
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        logger.info("the model server does not describe its models (%s)", exc)
        return ServedModel()


def served_model(model: str) -> ServedModel:
    """The server's description of `model`, cached for TTL seconds."""
    key = (settings.LLM_BASE_URL, model)
    now = time.monotonic()
    with _lock:
        cached = _models.get(key)
    if cached is not None and now - cached[0] < TTL:
        return cached[1]
    info = _fetch(model)
    with _lock:
        _models[key] = (now, info)
    return info


def context_tokens(model: str) -> int:
    """The model's window: what the server reports, else LLM_CONTEXT_TOKENS."""
    return served_model(model).context_tokens or settings.LLM_CONTEXT_TOKENS


def estimate(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE)


def _server_kind(model: str) -> str:
    """ "vllm", "llama.cpp" or "" (unknown), from the version the server reported."""
    return served_model(model).server.split(" ", 1)[0]


def _tokenize(client: httpx.Client, root: str, model: str, text: str) -> int:
    # vLLM reads `prompt` and `add_special_tokens` (and logs a warning for fields it ignores),
    # llama.cpp `content` and `add_special`; a server of unknown kind gets both.
    vllm = {"model": model, "prompt": text, "add_special_tokens": False}
    llama = {"content": text, "add_special": False}
    body = {"vllm": vllm, "llama.cpp": llama}.get(_server_kind(model), {**vllm, **llama})
    response = client.post(f"{root}/tokenize", json=body)
    response.raise_for_status()
    body = response.json()
    count = body.get("count")
    return count if isinstance(count, int) else len(body["tokens"])


def count_tokens(texts: list[str], *, model: str) -> tuple[list[int], bool]:
    """(token count of each text, exact). Exact counts come from the server's tokenizer and
    are remembered (passages come back question after question); if the server has no
    tokenizer endpoint, each text is estimated (`estimate`)."""
    import httpx

    root = _root_url()
    keys = [(root, model, hashlib.sha256(t.encode("utf-8")).hexdigest()) for t in texts]
    with _lock:
        missing_since = _tokenize_missing.get(root)
        known = {key: _counts[key] for key in keys if key in _counts}
    if len(known) == len(set(keys)):
        return [known[key] for key in keys], True
    if missing_since is None or time.monotonic() - missing_since > TTL:
        try:
            with _http() as client:
                for key, text in zip(keys, texts, strict=True):
                    if key not in known:
                        known[key] = _tokenize(client, root, model, text)
            with _lock:
                for key in keys:
                    _counts[key] = known[key]
                    _counts.move_to_end(key)
                while len(_counts) > MAX_COUNTS:
                    _counts.popitem(last=False)
            return [known[key] for key in keys], True
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            logger.info("the model server cannot count tokens (%s); estimating", exc)
            with _lock:
                _tokenize_missing[root] = time.monotonic()
    return [estimate(text) for text in texts], False


_PROBE = "x"
_templates: dict[tuple[str, str], tuple[float, int]] = {}


def _template_probe(client: httpx.Client, model: str) -> int:
    """Tokens of a one-message prompt holding `_PROBE`, as the server's template renders it
    (llama.cpp: /apply-template then /tokenize; vLLM: /tokenize with messages); 0 if neither."""
    root = _root_url()
    messages = [{"role": "user", "content": _PROBE}]
    kind = _server_kind(model)
    response = (
        client.post(f"{root}/apply-template", json={"messages": messages})
        if kind != "vllm"
        else None
    )
    if (
        response is not None
        and response.status_code == 200
        and isinstance(response.json().get("prompt"), str)
    ):
        tokens = client.post(
            f"{root}/tokenize", json={"content": response.json()["prompt"], "add_special": True}
        )
        tokens.raise_for_status()
        return len(tokens.json()["tokens"])
    response = client.post(
        f"{root}/tokenize",
        json={"model": model, "messages": messages, "add_generation_prompt": True},
    )
    response.raise_for_status()
    count = response.json().get("count")
    return count if isinstance(count, int) else 0


def template_tokens(model: str) -> int:
    """The chat template's own tokens around one message (role markers, BOS, generation
    prompt), measured on the server once per TTL; 0 when it cannot say."""
    import httpx

    key = (settings.LLM_BASE_URL, model)
    now = time.monotonic()
    with _lock:
        cached = _templates.get(key)
    if cached is not None and now - cached[0] < TTL:
        return cached[1]
    try:
        with _http() as client:
            total = _template_probe(client, model)
        text = count_tokens([_PROBE], model=model)[0][0] if total else 0
        overhead = max(0, total - text)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        logger.info("the model server does not render its chat template (%s)", exc)
        overhead = 0
    with _lock:
        _templates[key] = (now, overhead)
    return overhead


def system_role_refused(model: str) -> bool:
    """Whether this server's chat template refused a system message for `model` before."""
    with _lock:
        return (settings.LLM_BASE_URL, model) in _system_refused


def remember_system_role_refused(model: str) -> None:
    with _lock:
        _system_refused.add((settings.LLM_BASE_URL, model))


def forget() -> None:
    """Drop everything cached (tests, or after pointing LLM_BASE_URL elsewhere)."""
    with _lock:
        _models.clear()
        _templates.clear()
        _counts.clear()
        _tokenize_missing.clear()
        _system_refused.clear()
