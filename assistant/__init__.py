"""Attest: the Django project package and the question-answering app.

The Celery application (assistant/celery.py) is loaded by AssistantConfig.ready() in every
Django process, and found by `celery -A assistant` as the `config.celery` module; it is not
imported here, so that processes that only need a module of this package without Django (the
audit verify workers, assistant/audit_workers.py) do not pay Celery's 0.2 s import.
"""
