"""Test settings: start a private embedded PostgreSQL + pgvector and Redis, then load the
project settings against them. Imported once by pytest-django, before any test runs.

Set TEST_DATABASE_URL / TEST_REDIS_URL to use servers of your own instead.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from launcher import embedded

_ROOT = Path(tempfile.mkdtemp(prefix="attest-test-"))
# Registered first so it runs last (atexit is LIFO): after the servers below have stopped.
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
embedded.ensure_runtime_dir(_ROOT)
os.environ["DATA_DIR"] = str(_ROOT / "data")
# One ONNX export per test session, shared by every process the tests start (make run too).
os.environ["EMBEDDING_ONNX_DIR"] = str(_ROOT / "onnx")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
for _name in (
    "LLM_BASE_URL",
    "LLM_BACKEND",
    "LLM_MODEL",
    "LLM_API_KEY",
    "DATABASE_URL",
    "REDIS_URL",
):
    os.environ.pop(_name, None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# The embedded server's handle: the fault tests stop and restart it (tests/faults.py); None
# with a server of your own, which they leave alone.
EMBEDDED_POSTGRES = None
if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
else:
    EMBEDDED_POSTGRES = embedded.start_postgres(_ROOT / "pg")
    os.environ["DATABASE_URL"] = EMBEDDED_POSTGRES.get_uri()
    atexit.register(EMBEDDED_POSTGRES.cleanup)

if os.environ.get("TEST_REDIS_URL"):
    os.environ["REDIS_URL"] = os.environ["TEST_REDIS_URL"]
else:
    _redis, _redis_url = embedded.start_redis(_ROOT / "redis", env=dict(os.environ), persist=False)
    os.environ["REDIS_URL"] = _redis_url
    atexit.register(embedded.stop, _redis)

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
