from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Collections and documents"

    def ready(self) -> None:
        # A patient added or changed in this process is redacted from the next request on.
        from django.db.models.signals import post_delete, post_save

        # The ingestion task registered in every process that queues it (services._enqueue
        # finds it by name).
        from . import tasks  # noqa: F401
        from .models import Patient
        from .redaction import patients_changed

        post_save.connect(patients_changed, sender=Patient, dispatch_uid="attest-redact-patients")
        post_delete.connect(patients_changed, sender=Patient, dispatch_uid="attest-redact-gone")
