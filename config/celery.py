"""The Celery application: configured from Django settings (CELERY_* names).

`celery -A config worker` finds it as `config.celery_app`; every Django process loads it with
the settings (config/__init__.py), so tasks queued from the web or manage.py use it.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("attest")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
