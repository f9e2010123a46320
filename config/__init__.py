"""The Django project: settings, the Celery app, WSGI/ASGI entry points, root URLs, middleware
and single sign-on (OpenID Connect).

It sits above the apps and may import any of them; no app imports it (settings are read
through django.conf.settings).

    config      the project (this package)
    assistant   questions become cited answers: portal, API, retrieval, generation, grounding
    ingest      documents become passages: parsers, chunking, embedding, search, patients
    audit       everything becomes evidence: the trail, its tree, checkpoints, receipts, review
    evaluation  benchmarks of retrieval and answers over the apps
    launcher    `make run`: the embedded PostgreSQL, Redis and llama.cpp, outside the apps
"""

from .celery import app as celery_app

__all__ = ["celery_app"]
