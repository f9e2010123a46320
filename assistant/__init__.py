"""Attest: the Django project package and the question-answering app."""

from .celery import app as celery_app

__all__ = ("celery_app",)
