"""The audit trail in Django's admin: read-only, for superusers who need the raw rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from .models import AuditEvent, ChainCheck

if TYPE_CHECKING:
    from django.http import HttpRequest


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail is append-only: viewable here, never editable or deletable."""

    list_display = ["id", "created_at", "event_type", "actor_username", "summary", "ip_address"]
    list_display_links = ["id", "event_type"]
    list_filter = ["event_type", "flagged", "redacted"]
    search_fields = ["actor_username", "event_type", "summary"]
    exclude = ["search_text"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False


@admin.register(ChainCheck)
class ChainCheckAdmin(admin.ModelAdmin):
    """Chain-check results are evidence (a broken chain's is the alarm): viewable, never
    added, changed or deleted here, not even by a superuser."""

    list_display = ["checked_at", "ok", "entries", "redacted", "first_broken_id", "seconds"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ChainCheck | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ChainCheck | None = None) -> bool:
        return False
