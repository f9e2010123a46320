"""Run llama.cpp's OpenAI-compatible HTTP server (xllamacpp) until SIGTERM or SIGINT.

    python -m launcher.llm_server --model PATH.gguf --port 8012 [--alias NAME]
        [--chat-template-file FILE.jinja] [--reasoning-format deepseek|none|auto]
        [--grammar-file FILE.gbnf] [--no-jinja]

Serves /v1/models, /v1/completions and /v1/chat/completions on 127.0.0.1 only. A chat template
file replaces the GGUF's own (Jinja, as vLLM applies a model's `chat_template`); the reasoning
format is llama.cpp's `--reasoning-format` (`deepseek`: a `<think>` block goes to
`reasoning_content`; `none`: it stays in `content`); a grammar file (GBNF) constrains every
reply of the server, as llama.cpp's `--grammar-file` does.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="path to a GGUF file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default="", help="model name reported to clients")
    parser.add_argument("--ctx", type=int, default=4096, help="context window in tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1, help="concurrent request slots")
    parser.add_argument("--chat-template-file", type=Path, help="a Jinja chat template")
    parser.add_argument(
        "--reasoning-format", choices=["deepseek", "none", "auto"], default="deepseek"
    )
    parser.add_argument("--grammar-file", type=Path, help="GBNF grammar for every reply")
    parser.add_argument("--no-jinja", action="store_true", help="llama.cpp's built-in templates")
    args = parser.parse_args(argv)

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx * args.parallel
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.port = args.port
    if args.alias:
        params.model_alias = {args.alias}
    params.use_jinja = not args.no_jinja
    if args.chat_template_file is not None:
        params.chat_template = args.chat_template_file.read_text(encoding="utf-8")
    formats = xllamacpp.common_reasoning_format
    params.reasoning_format = {
        "deepseek": formats.COMMON_REASONING_FORMAT_DEEPSEEK,
        "none": formats.COMMON_REASONING_FORMAT_NONE,
        "auto": formats.COMMON_REASONING_FORMAT_AUTO,
    }[args.reasoning_format]
    if args.grammar_file is not None:
        # The sampling parameters are a copy: set the grammar on it, then put it back.
        sampling = params.sampling
        sampling.grammar = xllamacpp.CommonGrammar(
            xllamacpp.common_grammar_type.COMMON_GRAMMAR_TYPE_USER,
            args.grammar_file.read_text(encoding="utf-8"),
        )
        params.sampling = sampling

    stop = {"now": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = xllamacpp.Server(params)
    print(f"llama.cpp server on http://127.0.0.1:{args.port}/v1 ({args.model})", flush=True)
    while not stop["now"]:
        signal.pause()
    del server  # joins the server's threads
    return 0


if __name__ == "__main__":
    sys.exit(main())
