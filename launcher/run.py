"""`make run`: start the whole product on embedded defaults; Ctrl-C or SIGTERM stops all of it.

Starts, unless the matching variable points elsewhere: PostgreSQL 18 + pgvector
(DATABASE_URL), Redis (REDIS_URL), the llama.cpp server (LLM_BASE_URL); then migrates, creates
the first admin and the audit signing key (DATA_DIR/keys), and runs one Celery worker (with
beat, which writes signed audit checkpoints to DATA_DIR/checkpoints) and the web server
(gunicorn) on 127.0.0.1:PORT.
Every child runs in its own process group and is stopped in reverse order on exit.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import embedded

if TYPE_CHECKING:
    from types import FrameType

BASE_DIR = Path(__file__).resolve().parent.parent


class Shutdown(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> NoReturn:
    raise Shutdown(signal.Signals(signum).name)


def _secret_key(data_dir: Path) -> str:
    key_file = data_dir / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _say(message: str) -> None:
    print(f"[attest] {message}", flush=True)


def _audit_signing(manage: list[str], env: dict[str, str], data_dir: Path) -> None:
    """Create the audit signing key on first start (unless one is configured) and the
    checkpoint folder, so the worker's beat writes signed checkpoints (issue 9)."""
    default_key = data_dir / "keys" / "audit_ed25519"
    key_file = Path(env.get("AUDIT_SIGNING_KEY_FILE") or default_key)
    if not env.get("AUDIT_SIGNING_KEY") and not key_file.exists():
        if key_file == default_key:
            _say(f"creating the audit signing key in {key_file.parent}")
            subprocess.run(
                [*manage, "audit", "keygen", "--out", str(key_file.parent)], env=env, check=True
            )
        else:
            _say(f"WARNING: AUDIT_SIGNING_KEY_FILE {key_file} does not exist: no receipts")
    checkpoint_dir = Path(env.get("AUDIT_CHECKPOINT_DIR") or data_dir / "checkpoints")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    _say(f"signed audit checkpoints go to {checkpoint_dir}")


def main() -> int:
    data_dir = Path(os.environ.get("DATA_DIR") or BASE_DIR / "var").resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    embedded.ensure_runtime_dir(data_dir)
    env = dict(os.environ)
    env["DATA_DIR"] = str(data_dir)
    env.setdefault("SECRET_KEY", _secret_key(data_dir))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    port = int(env.get("PORT") or 8000)
    python = sys.executable
    bindir = Path(python).parent

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    children: list[tuple[str, subprocess.Popen]] = []
    postgres = None
    code = 0
    try:
        if not env.get("DATABASE_URL"):
            _say(f"starting PostgreSQL 18 + pgvector in {data_dir / 'pg'}")
            postgres = embedded.start_postgres(data_dir / "pg")
            env["DATABASE_URL"] = postgres.get_uri()
        if not env.get("REDIS_URL"):
            _say("starting Redis")
            proc, url = embedded.start_redis(data_dir / "redis", env=env)
            children.append(("redis", proc))
            env["REDIS_URL"] = url
        if not env.get("LLM_BASE_URL") and env.get("LLM_BACKEND", "") != "extractive":
            model = Path(env["LLM_GGUF"]) if env.get("LLM_GGUF") else None
            model = model or embedded.ensure_gguf(data_dir / "models")
            llm_port = int(env.get("LLM_PORT") or embedded.free_port())
            _say(f"starting the local LLM server (llama.cpp, {model.name}) on port {llm_port}")
            proc, url = embedded.start_llm(
                model_path=model, port=llm_port, env=env, log=logs / "llm.log"
            )
            children.append(("llm", proc))
            env["LLM_BASE_URL"] = url
            env.setdefault("LLM_BACKEND", "llamacpp")
            env.setdefault("LLM_MODEL", embedded.DEFAULT_MODEL_ALIAS)

        manage = [python, str(BASE_DIR / "manage.py")]
        _say("applying database migrations")
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "audit", "snapshot-settings"], env=env, check=True)
        subprocess.run([*manage, "ensure_admin"], env=env, check=True)
        subprocess.run([*manage, "ingest_recover"], env=env, check=True)
        _audit_signing(manage, env, data_dir)

        _say("starting a Celery worker (with beat: signed audit checkpoints, ingestion recovery)")
        (data_dir / "run").mkdir(parents=True, exist_ok=True)
        worker = embedded.spawn(
            [
                str(bindir / "celery"),
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                env.get("CELERY_CONCURRENCY", "1"),
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"attest-{os.getpid()}@%h",
                "-B",
                "--schedule",
                str(data_dir / "run" / "celerybeat-schedule"),
            ],
            env=env,
            log=logs / "worker.log",
        )
        children.append(("worker", worker))
        web = embedded.spawn(
            [
                str(bindir / "gunicorn"),
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                env.get("WEB_WORKERS", "2"),
                "--threads",
                "4",
                "--timeout",
                "180",
                "--access-logfile",
                str(logs / "access.log"),
                # One listening socket per worker: the kernel spreads connections evenly, so no
                # worker queues most keep-alive clients (docs/performance.md, Load).
                "--reuse-port",
                "--error-logfile",
                str(logs / "web.log"),
            ],
            env=env,
        )
        children.append(("web", web))
        _say(f"Attest is running on http://127.0.0.1:{port}/  (logs in {logs})")
        _say("Press Ctrl-C to stop everything.")
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    _say(f"{name} exited unexpectedly with code {proc.returncode}; stopping")
                    code = 1
                    raise Shutdown(name)
            time.sleep(0.5)
    except Shutdown:
        pass
    except subprocess.CalledProcessError as exc:
        _say(f"set-up step failed: {exc}")
        code = 1
    except Exception as exc:  # noqa: BLE001 - report, then still stop what was started
        _say(f"failed to start: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _say("stopping")
        for name, proc in reversed(children):
            # Celery finishes the task in hand on SIGTERM; acks_late redelivers it otherwise.
            embedded.stop(proc, timeout=20 if name == "worker" else 10)
        if postgres is not None:
            postgres.cleanup()
        _say("stopped")
    return code
