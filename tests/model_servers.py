"""Real llama.cpp servers for the model families customers serve, and a recorder in front.

Each family is the packaged Gemma 3 270M behind llama.cpp's OpenAI-compatible server with that
family's chat template (Jinja, as vLLM applies a model's own), llama.cpp's reasoning parsing on
(`deepseek`) or off (`none`), and a GBNF grammar on the server that makes the 270M base model
write what that family writes (a `<think>` block, then a cited answer). The product code talks
to them exactly as it talks to vLLM.

`RecordingProxy` forwards every request unchanged to a server and keeps what was asked and the
status the server answered, so a test can see the request the product sent (and a refusal).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from launcher import embedded

MODELS = Path(__file__).resolve().parent / "fixtures" / "models"
ANSWER = "The licensee pays a royalty of seven percent of net sales [1]."
FAMILY_CTX = 1024  # small windows: fast prompts, and context fitting is always at work


@dataclass(frozen=True)
class Family:
    alias: str  # the model name the server reports (what LLM_MODEL names)
    template: str
    reasoning_format: str  # llama.cpp --reasoning-format
    grammar: str
    thinks: bool


FAMILIES = {
    "llama3": Family(
        "meta-llama/Llama-3.1-8B-Instruct", "llama3.jinja", "deepseek", "answer.gbnf", False
    ),
    "mistral": Family(
        "mistralai/Mistral-7B-Instruct-v0.3",
        "mistral-instruct.jinja",
        "none",
        "answer.gbnf",
        False,
    ),
    # DeepSeek-R1 distill served with a reasoning parser: thinking in `reasoning_content`.
    "r1": Family(
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "deepseek-r1-distill.jinja",
        "deepseek",
        "think-open.gbnf",
        True,
    ),
    # The same without one: thinking in `content`, opened by the template in the prompt.
    "r1-no-parser": Family(
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "deepseek-r1-distill.jinja",
        "none",
        "think-open.gbnf",
        True,
    ),
    # Qwen (ChatML); Qwen3 opens its own <think> block, served here without a parser.
    "qwen": Family("Qwen/Qwen3-8B", "chatml.jinja", "none", "think-tags.gbnf", True),
}


def start_family(name: str, model: Path, directory: Path) -> tuple[Any, str]:
    """Start one family's server; returns (process, base URL …/v1)."""
    family = FAMILIES[name]
    return embedded.start_llm(
        model_path=model,
        port=embedded.free_port(),
        env=dict(os.environ),
        alias=family.alias,
        log=directory / f"llm-{name}.log",
        threads=2,
        ctx=FAMILY_CTX,
        extra_args=[
            "--chat-template-file",
            str(MODELS / family.template),
            "--reasoning-format",
            family.reasoning_format,
            "--grammar-file",
            str(MODELS / family.grammar),
        ],
    )


def rendered(upstream: str, messages: list[dict]) -> tuple[str, list[int]]:
    """The prompt a server makes of `messages` with its chat template, and its tokens (special
    tokens parsed, as the server does for a chat request)."""
    root = upstream.removesuffix("/v1")
    prompt = _post(root + "/apply-template", {"messages": messages})["prompt"]
    return prompt, _post(root + "/tokenize", {"content": prompt, "add_special": True})["tokens"]


def token_ids(upstream: str, text: str) -> list[int]:
    """The server's tokens for `text`, special tokens parsed."""
    return _post(upstream.removesuffix("/v1") + "/tokenize", {"content": text})["tokens"]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(  # noqa: S310 - a loopback test server
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.load(response)


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    status: int


class RecordingProxy:
    """Forwards HTTP to `upstream` (a base URL …/v1) and records each exchange."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.records: list[Recorded] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_POST(self) -> None:
                proxy._forward(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.records if r.path.endswith("/chat/completions")]

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {
            k: v
            for k, v in handler.headers.items()
            if k.lower() in {"content-type", "authorization"}
        }
        upstream = http.client.HTTPConnection(self.host, self.port, timeout=120)
        upstream.request(method, handler.path, body=body, headers=headers)
        response = upstream.getresponse()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        self.records.append(Recorded(method, handler.path, parsed, response.status))
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in {"transfer-encoding", "content-length", "connection"}:
                handler.send_header(key, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            while chunk := response.read1(8192):
                handler.wfile.write(chunk)
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (the stop button)
        finally:
            upstream.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
