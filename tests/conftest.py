"""Shared fixtures: real services only (see tests/settings.py for PostgreSQL and Redis).

- `llm_server`: llama.cpp's OpenAI-compatible server with the packaged Gemma GGUF, on loopback.
- `family_server` / `use_family`: the same model behind the chat templates of the model families
  customers serve (tests/model_servers.py).
- `celery_worker`: a real `celery worker` process against the test database and Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from launcher import embedded

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval"
CUAD_PDF = EVAL / "cuad" / "pdf" / "LUCIDINC_04_15_2011-EX-10.9-DISTRIBUTOR AGREEMENT.PDF"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate limits and lockouts live in Redis database 1; start every test without any."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session")
def cuad_pdf() -> Path:
    """A real 8-page contract from CUAD; its discount clause is on page 5."""
    if not CUAD_PDF.exists():
        pytest.fail(
            f"evaluation data missing: {CUAD_PDF} (../shared/eval must sit beside the repo)"
        )
    return CUAD_PDF


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory) -> str:
    """Base URL (…/v1) of a real llama.cpp server running the packaged Gemma 3 270M."""
    directory = tmp_path_factory.mktemp("llm")
    model = embedded.ensure_gguf(directory)
    proc, url = embedded.start_llm(
        model_path=model,
        port=embedded.free_port(),
        env=dict(os.environ),
        log=directory / "llm.log",
        threads=2,
    )
    yield url
    embedded.stop(proc)


@pytest.fixture(scope="session")
def family_server(tmp_path_factory):
    """`family_server(name)`: base URL of a real llama.cpp server for one model family
    (tests/model_servers.py), started on first use and kept for the session."""
    from tests.model_servers import start_family

    directory = tmp_path_factory.mktemp("families")
    model = embedded.ensure_gguf(directory)
    started: dict[str, tuple] = {}

    def get(name: str) -> str:
        if name not in started:
            started[name] = start_family(name, model, directory)
        return started[name][1]

    yield get
    for proc, _ in started.values():
        embedded.stop(proc)


@pytest.fixture
def use_family(settings, family_server):
    """`use_family(name)`: the `openai` backend against that family's server, behind a
    recorder; returns the RecordingProxy."""
    from assistant import llm, model_server
    from tests.model_servers import FAMILIES, RecordingProxy

    proxies = []

    def use(name: str):
        proxy = RecordingProxy(family_server(name))
        proxies.append(proxy)
        settings.LLM_BACKEND = "openai"
        settings.LLM_BASE_URL = proxy.url
        settings.LLM_MODEL = FAMILIES[name].alias
        settings.LLM_TIMEOUT = 60.0
        llm.get_llm.cache_clear()
        model_server.forget()
        return proxy

    yield use
    llm.get_llm.cache_clear()
    model_server.forget()
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def use_llamacpp(settings, llm_server):
    """Point generation at the real local llama.cpp server for one test."""
    from assistant import llm

    settings.LLM_BACKEND = "llamacpp"
    settings.LLM_BASE_URL = llm_server
    settings.LLM_MODEL = embedded.DEFAULT_MODEL_ALIAS
    settings.LLM_TIMEOUT = 60.0
    llm.get_llm.cache_clear()
    yield llm_server
    llm.get_llm.cache_clear()


def _test_database_url() -> str:
    """DATABASE_URL with the database name swapped for pytest-django's test database."""
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + quote(connection.settings_dict["NAME"])))


def start_worker(
    log: Path,
    *,
    name: str,
    queues: str = "",
    env_extra: dict[str, str] | None = None,
    beat: bool = False,
):
    """Start a real Celery worker process (prefork, one child) on the test database and wait
    until it answers a ping; with `beat`, it also runs Celery beat (as `make run` does). Stop
    it with `embedded.stop` (or kill its process group)."""
    env = dict(os.environ)
    env.update(DATABASE_URL=_test_database_url(), DJANGO_SETTINGS_MODULE="config.settings")
    env.update(env_extra or {})
    schedule = ["-B", "--schedule", str(log.with_suffix(".schedule"))] if beat else []
    proc = embedded.spawn(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "-n",
            name,
            *(["-Q", queues] if queues else []),
            *schedule,
        ],
        env=env,
        log=log,
    )
    from config.celery import app

    def answers() -> bool:
        # A connection of its own: a pooled one may date from before a Redis restart.
        with app.connection_for_write() as connection:
            return bool(app.control.ping(destination=[name], timeout=0.5, connection=connection))

    deadline = time.monotonic() + 60
    while not answers():
        if proc.poll() is not None or time.monotonic() > deadline:
            embedded.stop(proc)
            pytest.fail("Celery worker did not start:\n" + log.read_text()[-3000:])
    return proc


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process (prefork, one child) on the test database."""
    import socket

    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with django_db_blocker.unblock():
        proc = start_worker(log, name=f"test-{os.getpid()}@{socket.gethostname()}")
    yield proc
    embedded.stop(proc, timeout=20)


def wait_for(predicate, *, timeout: float = 120.0, interval: float = 0.25, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition not met in time")
        time.sleep(interval)


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root-admin", email="", password="Correct-Horse-Battery-9"
    )


@pytest.fixture
def roles(db):
    """The role groups (transactional tests flush what the data migration created)."""
    from assistant.roles import roles_ensure

    return roles_ensure()


@pytest.fixture
def officer(django_user_model, roles):
    user = django_user_model.objects.create_user(username="olivia", password="Officer-Pass-2026!")
    user.groups.add(roles["compliance"])
    return user


@pytest.fixture
def plain_user(django_user_model):
    return django_user_model.objects.create_user(username="reader", password="Reader-Pass-2026!")


def run_manage(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run manage.py in a subprocess against the test database (as an operator would)."""
    full_env = dict(os.environ)
    full_env.update(DATABASE_URL=_test_database_url(), DJANGO_SETTINGS_MODULE="config.settings")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
