"""Attest settings, every knob an environment variable. Unset, the embedded defaults `make run`
starts (under DATA_DIR); a bad value raises ImproperlyConfigured naming the variable."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from . import env
from . import rest as _rest
from .env import env_bool, env_choice, env_float, env_int, env_json_str_list, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Paths -----------------------------------------------------------------------------------
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var"))).resolve()
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media/"  # never served directly: downloads go through permission-checked views
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
try:  # WhiteNoise warns on every request when the folder is missing (no collectstatic yet)
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:
    pass

# --- Core ------------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if DEBUG or env_bool("ATTEST_DEV", False):
        SECRET_KEY = "dev-only-insecure-key-" + quote(str(DATA_DIR))
    else:
        # The launcher writes a random key under DATA_DIR for local runs.
        key_file = DATA_DIR / "secret_key"
        if key_file.exists():
            SECRET_KEY = key_file.read_text().strip()
        else:
            raise ImproperlyConfigured(
                "SECRET_KEY is not set (and no DATA_DIR/secret_key file exists)"
            )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "ingest",
    "assistant",
    "audit",
    "evaluation",
    "rest_framework",
    "drf_spectacular",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.RequestSizeLimitMiddleware",
    "config.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "assistant.privileges.ActingUserMiddleware",
    "ingest.row_security.RowSecurityMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL + pgvector ---------------------------------------------------------
# Default: the embedded server's unix socket under DATA_DIR/pg (what `make run` starts).
DATABASE_URL = env_str("DATABASE_URL") or (
    f"postgresql://postgres@/postgres?host={quote(str(DATA_DIR / 'pg'), safe='/')}"
)
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except Exception as exc:  # dj-database-url raises several types for bad URLs
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (with pgvector)")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery ------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL") or f"unix://{DATA_DIR / 'redis' / 'redis.sock'}"
CELERY_BROKER_URL = env.redis_broker_url(REDIS_URL)
# Rate limits and sign-in lockouts are counted in Redis, shared by every web process. When it
# does not answer within a second, assistant/throttle.py counts nothing and lets requests in.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL") or env.redis_cache_url(REDIS_URL),
        "KEY_PREFIX": "attest",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}
CELERY_RESULT_BACKEND = None  # results live in PostgreSQL (Document.status), not in Redis
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A worker killed mid-document must not lose the task: acknowledge after it finishes and
# redeliver when the worker is lost. Each document's chunks are replaced in one transaction.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=2)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": _VISIBILITY_TIMEOUT}
# Redis gives a message nobody acknowledged to another worker after the visibility timeout, so
# every task ends before it: the soft limit fails the document with the reason, the hard limit
# (INGEST_TIME_LIMIT) kills the worker process.
INGEST_TIME_LIMIT = env_int("INGEST_TIME_LIMIT", max(1, _VISIBILITY_TIMEOUT * 5 // 6), minimum=1)
if INGEST_TIME_LIMIT >= _VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        f"INGEST_TIME_LIMIT ({INGEST_TIME_LIMIT}) must be below CELERY_VISIBILITY_TIMEOUT "
        f"({_VISIBILITY_TIMEOUT}), or Redis gives a running task to a second worker"
    )
CELERY_TASK_TIME_LIMIT = INGEST_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = max(1, INGEST_TIME_LIMIT - max(1, INGEST_TIME_LIMIT // 10))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False

# --- Ingestion -------------------------------------------------------------------------------
EMBEDDING_MODEL = env_str("EMBEDDING_MODEL")  # a sentence-transformers folder; default: packaged
EMBEDDING_DIMENSIONS = 384
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 32, minimum=1)
# onnx: ONNX Runtime, int8 where it stays within cosine 0.99 of the reference (about 2-3x torch
# on CPU); falls back to torch, with a warning, if the export or load fails. torch: the reference.
EMBEDDING_BACKEND = env_choice("EMBEDDING_BACKEND", "onnx", {"onnx", "torch"})
EMBEDDING_ONNX_INT8 = env_bool("EMBEDDING_ONNX_INT8", True)
# The exported ONNX model (built once from the packaged model, shared by every process).
EMBEDDING_ONNX_DIR = Path(env_str("EMBEDDING_ONNX_DIR", str(DATA_DIR / "models" / "onnx")))
# Threads for one forward pass; 0 = every core this process may use. With several Celery
# worker processes on one machine, set cores / concurrency.
EMBEDDING_THREADS = env_int("EMBEDDING_THREADS", 0, minimum=0)
CHUNK_SIZE = env_int("CHUNK_SIZE", 1000, minimum=100)  # characters
CHUNK_OVERLAP = env_int("CHUNK_OVERLAP", 150, minimum=0)  # characters
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 100 * 1024 * 1024, minimum=1)
# Leases, attempts and recovery: ingest/leases.py, ingest/services.py (documents_recover).
INGEST_LEASE_SECONDS = env_int("INGEST_LEASE_SECONDS", 60, minimum=2)
INGEST_MAX_ATTEMPTS = env_int("INGEST_MAX_ATTEMPTS", 3, minimum=1)
INGEST_RECOVER_SECONDS = env_int("INGEST_RECOVER_SECONDS", 60, minimum=1)  # Celery beat
INGEST_REQUEUE_SECONDS = _VISIBILITY_TIMEOUT  # a queued message may have been lost after this
# OCR (Tesseract) for scanned PDF pages and images: languages as Tesseract names them
# ("eng", "eng+deu": each needs its tesseract-ocr-LANG package), render resolution, a time
# limit per page, and the most pages one document may send to OCR.
OCR_LANGUAGES = env_str("OCR_LANGUAGES", "eng")
OCR_DPI = env_int("OCR_DPI", 300, minimum=72)
OCR_PAGE_TIMEOUT = env_int("OCR_PAGE_TIMEOUT", 180, minimum=1)  # seconds
OCR_MAX_PAGES = env_int("OCR_MAX_PAGES", 1000, minimum=0)
# .zip uploads are unpacked one level deep within these limits (ingest/archives.py).
ZIP_MAX_ENTRIES = env_int("ZIP_MAX_ENTRIES", 10_000, minimum=1)
ZIP_MAX_TOTAL_BYTES = env_int("ZIP_MAX_TOTAL_BYTES", 2 * 1024 * 1024 * 1024, minimum=1)
ZIP_MAX_RATIO = env_float("ZIP_MAX_RATIO", 200.0)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Largest request body (a multipart upload of several files); larger ones get 413 unread.
REQUEST_MAX_BYTES = env_int("REQUEST_MAX_BYTES", 1024 * 1024 * 1024, minimum=1024)

# --- Retrieval -------------------------------------------------------------------------------
RETRIEVAL_K = env_int("RETRIEVAL_K", 5, minimum=1)
RETRIEVAL_CANDIDATES = env_int("RETRIEVAL_CANDIDATES", 50, minimum=1)
RETRIEVAL_RRF_K = env_int("RETRIEVAL_RRF_K", 60, minimum=1)
# Below this cosine similarity (and with no full-text match) a passage counts as unrelated.
RETRIEVAL_MIN_SIMILARITY = env_float("RETRIEVAL_MIN_SIMILARITY", 0.15)
# Full-text search leaves out question words found in more than this share of all chunks.
RETRIEVAL_TEXT_MAX_DF = env_float("RETRIEVAL_TEXT_MAX_DF", 0.5)
# A passage also counts as related when it holds at least this share of the question's search
# words (weighted by rarity); 1.0 = all of them, as an AND search.
RETRIEVAL_MIN_TEXT_MATCH = env_float("RETRIEVAL_MIN_TEXT_MATCH", 1.0)
# The refusal gate (docs/answers.md, "Refusal gate"; assistant/retrieval.py:answerable): a
# question is answered when its best passage reaches GATE_MIN_SIMILARITY (cosine; 0: gate off),
# or when one passage holds GATE_MIN_TEXT_MATCH of its rarity-weighted search words (0: this
# rule off) and the passages together GATE_MIN_COVERAGE of its content words. Otherwise the
# answer says the documents do not answer it and no model is called.
GATE_MIN_SIMILARITY = env_float("GATE_MIN_SIMILARITY", 0.4)
GATE_MIN_TEXT_MATCH = env_float("GATE_MIN_TEXT_MATCH", 0.6)
GATE_MIN_COVERAGE = env_float("GATE_MIN_COVERAGE", 0.6)
# Weights of the vector and full-text arms in reciprocal-rank fusion (see docs/retrieval.md).
RETRIEVAL_VECTOR_WEIGHT = env_float("RETRIEVAL_VECTOR_WEIGHT", 1.0)
RETRIEVAL_TEXT_WEIGHT = env_float("RETRIEVAL_TEXT_WEIGHT", 1.0)
# Widen each passage by this many neighbouring chunks on each side (0 = off).
RETRIEVAL_NEIGHBOURS = env_int("RETRIEVAL_NEIGHBOURS", 0, minimum=0)
# HNSW scan candidate list (hnsw.ef_search); 0 = max(40, RETRIEVAL_CANDIDATES).
RETRIEVAL_EF_SEARCH = env_int("RETRIEVAL_EF_SEARCH", 0, minimum=0)
# Full-text search keeps only this many of the question's rarest words (0 = all).
RETRIEVAL_TEXT_MAX_TERMS = env_int("RETRIEVAL_TEXT_MAX_TERMS", 0, minimum=0)
# Full-text candidates are the chunks holding one of the question's rarest words: the rarest
# while the chunks estimated to hold them stay within this many (always at least the rarest
# word); candidates are scored on all words. Bounds the arm's work however large the table
# grows: no change on the development sets (docs/retrieval.md), 1M-chunk p95 within 50 ms
# (docs/performance.md). 0 = every chunk holding any question word is a candidate.
RETRIEVAL_TEXT_MAX_POSTINGS = env_int("RETRIEVAL_TEXT_MAX_POSTINGS", 10_000, minimum=0)

# --- Answer generation -----------------------------------------------------------------------
# openai: chat completions against vLLM or any OpenAI-compatible server.
# llamacpp: completion-style few-shot prompt for a base GGUF model behind llama.cpp's server.
# extractive: no model; the best sentences of the retrieved passages.
LLM_BASE_URL = env_str("LLM_BASE_URL")
LLM_BACKEND = env_choice(
    "LLM_BACKEND", "openai" if LLM_BASE_URL else "extractive", {"openai", "llamacpp", "extractive"}
)
LLM_MODEL = env_str("LLM_MODEL", "gemma-3-270m")
LLM_API_KEY = env_str("LLM_API_KEY", "not-needed")
LLM_TIMEOUT = env_float("LLM_TIMEOUT", 60.0)
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2, minimum=0)
# Tokens the model may write, its reasoning included; 0 = 4096 for a model that thinks first
# (LLM_THINKING, or a name such as DeepSeek-R1-Distill), else 512. See docs/models.md.
LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 0, minimum=0)
# 0 for reproducible answers (greedy decoding); DeepSeek suggests 0.6 for R1 models.
LLM_TEMPERATURE = env_float("LLM_TEMPERATURE", 0.0)
# The model's window when the server does not report it in /v1/models.
LLM_CONTEXT_TOKENS = env_int("LLM_CONTEXT_TOKENS", 4096, minimum=256)
# How to read a reasoning block that arrives in the answer (assistant/reasoning.py).
LLM_THINKING = env_choice("LLM_THINKING", "auto", {"auto", "open", "tags", "off"})
# Instructions as a system message (`system`), in the first user turn (`user`), or `auto`:
# a system message until the server's chat template refuses one, then the user turn.
LLM_SYSTEM_ROLE = env_choice("LLM_SYSTEM_ROLE", "auto", {"auto", "system", "user"})
# Stop sequences (a JSON list); unset: none for `openai`, a newline for `llamacpp`.
LLM_STOP = env_json_str_list("LLM_STOP")
# A model's sentence is "unsupported" when fewer than this share of its content words appear
# in the passages it cites (extractive answers quote passages and always pass).
SUPPORT_THRESHOLD = env_float("SUPPORT_THRESHOLD", 0.5)
# Questions about one patient's record: "quote" answers with the record's own fact lines (dates,
# codes, values and units exactly as recorded, each cited) without calling the model; "model"
# lets LLM_BACKEND write the answer. Measured on the records dev set (docs/records.md): quoting
# 0.957, Gemma 3 270M 0.647 on answerable questions.
PATIENT_ANSWERS = env_choice("PATIENT_ANSWERS", "quote", {"quote", "model"})
if LLM_BACKEND in {"openai", "llamacpp"} and not LLM_BASE_URL:
    raise ImproperlyConfigured(f"LLM_BACKEND={LLM_BACKEND} needs LLM_BASE_URL")

# --- Audit trail ----------------------------------------------------------------------------
# Entries older than this are reduced to tombstones by `manage.py audit purge` (0 keeps all);
# collections on legal hold are exempt.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 0, minimum=0)
AUDIT_PAGE_SIZE = env_int("AUDIT_PAGE_SIZE", 50, minimum=1)
# Keep a reasoning model's thinking in the answer's audit entry (docs/audit.md says why it is on
# by default); off keeps only its length, duration and sha256.
AUDIT_MODEL_REASONING = env_bool("AUDIT_MODEL_REASONING", True)
# Signed checkpoints of the audit trail's Merkle tree (issue 9). The Ed25519 private key is read
# from AUDIT_SIGNING_KEY (PEM, or the base64 of the 32-byte seed) or else from the file; it
# never goes into the database. Checkpoints are written as files to a directory meant for
# WORM / object-lock storage, and optionally POSTed to a witness inside the building.
AUDIT_SIGNING_KEY = env_str("AUDIT_SIGNING_KEY")
AUDIT_SIGNING_KEY_FILE = Path(
    env_str("AUDIT_SIGNING_KEY_FILE", str(DATA_DIR / "keys" / "audit_ed25519"))
)
AUDIT_CHECKPOINT_DIR = Path(env_str("AUDIT_CHECKPOINT_DIR", str(DATA_DIR / "checkpoints")))
AUDIT_CHECKPOINT_SECONDS = env_int("AUDIT_CHECKPOINT_SECONDS", 10, minimum=1)
AUDIT_WITNESS_URL = env_str("AUDIT_WITNESS_URL")
# `audit verify` on a trail of at least AUDIT_VERIFY_PARALLEL_FROM entries recomputes payload
# hashes in this many worker processes (same snapshot) while the main process checks the chain
# and the tree; 0 keeps it in one process. See docs/audit.md ("Verify speed").
AUDIT_VERIFY_WORKERS = env_int("AUDIT_VERIFY_WORKERS", 2, minimum=0)
AUDIT_VERIFY_PARALLEL_FROM = env_int("AUDIT_VERIFY_PARALLEL_FROM", 50_000, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "audit-checkpoint": {
        "task": "audit.checkpoint",
        "schedule": float(AUDIT_CHECKPOINT_SECONDS),
        # A checkpoint older than one interval is worthless; do not let them pile up.
        "options": {"expires": float(AUDIT_CHECKPOINT_SECONDS)},
    },
    "ingest-recover": {
        "task": "ingest.recover",
        "schedule": float(INGEST_RECOVER_SECONDS),
        "options": {"expires": float(INGEST_RECOVER_SECONDS)},
    },
}

# --- Auth and security -----------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
# Failed sign-ins (in LOGIN_LOCKOUT_SECONDS) that lock a username, or a client address under
# any usernames (password spraying), for LOGIN_LOCKOUT_SECONDS (assistant/throttle.py).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=0)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 30, minimum=0)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# Per-user limits: questions and uploads per RATE_WINDOW_SECONDS (0 = unlimited).
ASK_RATE_LIMIT = env_int("ASK_RATE_LIMIT", 30, minimum=0)
UPLOAD_RATE_LIMIT = env_int("UPLOAD_RATE_LIMIT", 500, minimum=0)
RATE_WINDOW_SECONDS = env_int("RATE_WINDOW_SECONDS", 60, minimum=1)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Behind HTTPS (production): secure cookies, HSTS and a redirect from plain HTTP.
# `make run` serves plain HTTP on loopback, so this is off unless HTTPS=true.
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS or env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_COOKIE_HTTPONLY = True
if HTTPS:
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # A TLS-terminating proxy in front (compose: your load balancer) says so in this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True  # `make run` serves static files without a collectstatic step

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {"httpx": {"level": "WARNING"}, "sentence_transformers": {"level": "WARNING"}},
}

# --- REST API (/api/v1/, docs/api.md): config/rest.py, constants only -------------------------
REST_FRAMEWORK = _rest.REST_FRAMEWORK
SPECTACULAR_SETTINGS = _rest.SPECTACULAR_SETTINGS

# PostgreSQL row-level security for web requests (ingest/row_security.py): auto, on or off.
DB_ROW_SECURITY = env_choice("DB_ROW_SECURITY", "auto", {"auto", "on", "off"})

# --- Single sign-on (OpenID Connect, optional; config/oidc.py) -----------------------------------
# On when OIDC_RP_CLIENT_ID is set; then the OP endpoints are required.
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
# Password sign-ins behind the lockouts, whichever form asks (assistant/backends.py).
AUTHENTICATION_BACKENDS = ["assistant.backends.LockoutModelBackend"]
if OIDC_ENABLED:
    OIDC_RP_CLIENT_SECRET = env_str("OIDC_RP_CLIENT_SECRET")
    OIDC_RP_SIGN_ALGO = env_str("OIDC_RP_SIGN_ALGO", "RS256")
    OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
    _OIDC_REQUIRED = ["OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT"]
    _OIDC_REQUIRED += ["OIDC_OP_USER_ENDPOINT"]
    if OIDC_RP_SIGN_ALGO.startswith(("RS", "ES")):
        _OIDC_REQUIRED.append("OIDC_OP_JWKS_ENDPOINT")
    for _name in _OIDC_REQUIRED:
        if not env_str(_name):
            raise ImproperlyConfigured(f"OIDC_RP_CLIENT_ID is set, so {_name} is required")
    OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT")
    OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT")
    OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT")
    OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT")
    OIDC_OP_LOGOUT_ENDPOINT = env_str("OIDC_OP_LOGOUT_ENDPOINT")
    OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
    OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")
    OIDC_DEFAULT_ROLE = env_choice("OIDC_DEFAULT_ROLE", "", {"", "user", "compliance", "admin"})
    try:
        from config.oidc_claims import parse_role_map

        OIDC_ROLE_MAP = parse_role_map(env_str("OIDC_ROLE_MAP"))
    except ValueError as exc:
        raise ImproperlyConfigured(f"OIDC_ROLE_MAP: {exc}") from exc
    OIDC_RP_IDP_SIGN_KEY = None
    OIDC_OP_ISSUER = env_str("OIDC_OP_ISSUER")  # when set, ID tokens from others are refused
    OIDC_TIMEOUT = env_int("OIDC_TIMEOUT", 10, minimum=1)
    # The provider's word lasts this long: sessions are renewed through it, SSO users' API
    # tokens re-confirmed (config/oidc.py, assistant/sso.py).
    OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env_int("OIDC_RENEW_SECONDS", 15 * 60, minimum=60)
    OIDC_EXEMPT_URLS = ["login", "logout"]
    OIDC_CALLBACK_CLASS = "config.oidc.CallbackView"
    INSTALLED_APPS.append("mozilla_django_oidc")
    AUTHENTICATION_BACKENDS.insert(0, "config.oidc.AttestOIDCBackend")
    _AUTH_MIDDLEWARE = MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware")
    MIDDLEWARE.insert(_AUTH_MIDDLEWARE + 1, "config.oidc.SessionRefresh")
    LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/?sso=failed"
# Sessions end SESSION_COOKIE_AGE after sign-in; with SESSION_IDLE_EXPIRY, after that long
# without a request instead; with SESSION_EXPIRE_AT_BROWSER_CLOSE, also when the browser closes.
SESSION_SAVE_EVERY_REQUEST = env_bool("SESSION_IDLE_EXPIRY", False)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", False)

# Redact e-mail addresses, phone numbers, SSNs, MRNs and dates of birth in what users without
# the assistant.view_identifiers permission see (ingest/redaction.py). Stored text is kept.
REDACT_IDENTIFIERS = env_bool("REDACT_IDENTIFIERS", False)
