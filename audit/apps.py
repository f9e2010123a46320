from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from ingest.signals import attachment_stored

        from . import checks  # noqa: F401  (registers the deploy checks)
        from .receivers import on_attachment_stored

        attachment_stored.connect(on_attachment_stored, dispatch_uid="attest-audit-attachment")
