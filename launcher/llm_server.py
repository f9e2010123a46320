"""Run llama.cpp's OpenAI-compatible HTTP server (xllamacpp) until SIGTERM or SIGINT.

    python -m launcher.llm_server --model PATH.gguf --port 8012 [--alias NAME]

Serves /v1/models, /v1/completions and /v1/chat/completions on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import signal
import sys
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
