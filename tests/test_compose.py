"""Static checks of the container deployment: docker-compose.yml and the Dockerfile.

The CI machines have no Docker engine, so these read the files as YAML and text and check the
wiring that `docker compose up` depends on: the services, the environment the app is given,
that every variable given is one settings.py actually reads, and the startup order.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SETTINGS_FILE = REPO_ROOT / "config" / "settings.py"

EXPECTED_SERVICES = {"db", "redis", "vllm", "migrate", "web", "worker", "beat"}
APP_SERVICES = ("migrate", "web", "worker", "beat")
REQUIRED_APP_ENV = {
    "DATABASE_URL",
    "REDIS_URL",
    "LLM_BASE_URL",
    "LLM_MODEL",
    "LLM_BACKEND",
    "SECRET_KEY",
}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict; compose accepts a mapping or a list of NAME=value."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(word) for word in command]


def depends_on(service: dict[str, Any]) -> list[str]:
    # Either a list of names or a mapping of name -> {condition: ...}.
    return list(service.get("depends_on") or [])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def test_compose_defines_exactly_the_expected_services() -> None:
    assert set(services()) == EXPECTED_SERVICES


def test_db_uses_pgvector_image() -> None:
    assert services()["db"]["image"].startswith("pgvector/pgvector")


def test_vllm_uses_openai_image_and_reserves_a_gpu() -> None:
    vllm = services()["vllm"]
    assert "vllm/vllm-openai" in vllm["image"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device.get("capabilities", []) for device in devices)


def test_app_services_get_the_required_environment() -> None:
    all_services = services()
    for name in APP_SERVICES:
        env = environment(all_services[name])
        missing = REQUIRED_APP_ENV - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert env["LLM_BASE_URL"].startswith("http://vllm:"), f"{name}: {env['LLM_BASE_URL']}"


def test_every_web_env_variable_is_read_by_settings() -> None:
    # A variable settings.py never reads is silently ignored: a typo or a renamed setting
    # would leave production on its default.
    settings_text = SETTINGS_FILE.read_text()
    unread = [name for name in environment(services()["web"]) if f'"{name}"' not in settings_text]
    assert not unread, f"settings.py does not read {unread}"


def test_web_runs_gunicorn() -> None:
    assert command_words(services()["web"])[:2] == ["gunicorn", "config.wsgi:application"]


def test_worker_runs_celery_worker_for_the_project() -> None:
    assert " ".join(command_words(services()["worker"])).startswith("celery -A config worker")


def test_beat_queues_the_signed_audit_checkpoints() -> None:
    """Issue 9: one beat process schedules the checkpoint task the workers run."""
    assert " ".join(command_words(services()["beat"])).startswith("celery -A config beat")


def test_beat_also_schedules_the_ingestion_recovery() -> None:
    """Issue 19: beat (the compose service, and `make run`'s worker started with -B) queues
    ingest.recover, which sends again the tasks Redis never had or lost."""
    from django.conf import settings

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"audit.checkpoint", "ingest.recover"} <= tasks
    launcher = (REPO_ROOT / "launcher" / "run.py").read_text()
    assert '"worker",' in launcher and '"-B",' in launcher


def test_every_depends_on_target_is_a_defined_service() -> None:
    all_services = services()
    for name, service in all_services.items():
        unknown = set(depends_on(service)) - set(all_services)
        assert not unknown, f"{name} depends on undefined {sorted(unknown)}"


def test_named_volumes_are_declared() -> None:
    compose = load_compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_dockerfile_default_command_is_gunicorn() -> None:
    assert DOCKERFILE.is_file()
    commands = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"]
    assert commands, "Dockerfile has no CMD"
    cmd = commands[-1]  # the last CMD is the one that counts
    if cmd.startswith("["):
        cmd = " ".join(json.loads(cmd))
    assert "gunicorn config.wsgi" in cmd


def test_image_installs_the_ocr_tools() -> None:
    """Issue 3: scanned pages are OCR'd by Debian's Tesseract; the image must carry it, the
    English data and pdftoppm (the worker, which parses, runs this image)."""
    runs = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "RUN")
    for package in ("tesseract-ocr", "tesseract-ocr-eng", "poppler-utils"):
        assert f" {package} " in f" {runs.replace(chr(92), ' ')} ", package


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR:+alternative},
    and $$ for a literal $ (left for the shell)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, word = match.group(1), match.group(2) or "", match.group(3) or ""
        value = env.get(name, "")
        if op == ":-":
            return value or word
        if op == ":?":
            assert value, word
            return value
        if op == ":+":
            return word if value else ""
        return value

    return re.sub(r"\$\$|\$\{(\w+)(?:(:[-?+])([^}]*))?\}", one, text)


def vllm_argv(env: dict[str, str], tmp_path: Path) -> list[str]:
    """The arguments vllm would get: compose interpolates the service (with `env` as the host's
    environment), then the container's shell runs the command with a `vllm` that prints them."""
    vllm = services()["vllm"]
    assert vllm["entrypoint"] == ["/bin/sh", "-c"]
    container_env = {name: _interpolate(value, env) for name, value in environment(vllm).items()}
    script = _interpolate(command_words(vllm)[0], env)
    fake = tmp_path / "vllm"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    shell_env = {**container_env, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run(
        ["/bin/sh", "-c", script], env=shell_env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_reasoning_model_settings_reach_vllms_command_line(tmp_path: Path) -> None:
    """Issue 20: --reasoning-parser and --max-model-len are given from VLLM_REASONING_PARSER
    and VLLM_MAX_MODEL_LEN, and left out when those are unset."""
    r1 = vllm_argv(
        {
            "LLM_MODEL": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            "LLM_API_KEY": "k3y",
            "VLLM_REASONING_PARSER": "deepseek_r1",
            "VLLM_MAX_MODEL_LEN": "32768",
            "VLLM_GPUS": "2",
        },
        tmp_path,
    )
    assert r1[:2] == ["serve", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"]
    assert _flag(r1, "--served-model-name") == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    assert _flag(r1, "--reasoning-parser") == "deepseek_r1"
    assert _flag(r1, "--max-model-len") == "32768"
    assert _flag(r1, "--tensor-parallel-size") == "2"
    assert _flag(r1, "--api-key") == "k3y"

    llama = vllm_argv({"LLM_MODEL": "meta-llama/Llama-3.1-8B-Instruct"}, tmp_path)
    assert llama[:2] == ["serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert "--reasoning-parser" not in llama and "--max-model-len" not in llama
    assert (
        _flag(llama, "--api-key") == "change-me" and _flag(llama, "--tensor-parallel-size") == "1"
    )
    assert "" not in llama  # no empty argument for an unset option

    # The app asks for the model vLLM serves.
    app = environment(services()["web"])
    assert _interpolate(app["LLM_MODEL"], {"LLM_MODEL": "x/y"}) == "x/y"
    assert _flag(vllm_argv({"LLM_MODEL": "x/y"}, tmp_path), "--served-model-name") == "x/y"
