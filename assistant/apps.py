from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "assistant"
    verbose_name = "Questions, answers and audit"

    def ready(self) -> None:
        # Sign-ins, failed sign-ins and sign-outs come from django.contrib.auth as signals;
        # receiving them is the one place the audit trail listens rather than being called.
        from django.contrib.auth import signals

        # checks registers the deploy checks; celery loads the Celery app, so that tasks
        # queued from this process (web, manage.py) use it.
        from . import auth_audit, celery, checks  # noqa: F401

        signals.user_logged_in.connect(auth_audit.on_login, dispatch_uid="attest-login")
        signals.user_logged_out.connect(auth_audit.on_logout, dispatch_uid="attest-logout")
        signals.user_login_failed.connect(auth_audit.on_failed, dispatch_uid="attest-failed")
        # A patient added or changed in this process is redacted from the next request on.
        from django.db.models.signals import post_delete, post_save

        from ingest.models import Patient

        from .redaction import patients_changed

        post_save.connect(patients_changed, sender=Patient, dispatch_uid="attest-redact-patients")
        post_delete.connect(patients_changed, sender=Patient, dispatch_uid="attest-redact-gone")
