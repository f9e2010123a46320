"""Django admin: collections, grants, documents, users' roles and the (read-only) audit trail.

The ingest models are registered here, not in ingest/, because every change an administrator
makes is audited and the audit trail belongs to this app.
"""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html

from audit.append import RequestMeta
from ingest.models import Collection, CollectionGrant, Document

from . import actions


class GrantInline(admin.TabularInline):
    model = CollectionGrant
    extra = 1
    fields = ["group", "can_manage"]


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "legal_hold", "documents_link", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    readonly_fields = ["created_by", "created_at"]
    inlines = [GrantInline]

    @admin.display(description="Documents")
    def documents_link(self, obj: Collection) -> str:
        url = reverse("portal:collection", args=[obj.slug])
        return format_html('<a href="{}">Upload and view documents</a>', url)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        actions.collection_saved(
            collection=obj,
            created=not change,
            changes={f: str(form.cleaned_data.get(f)) for f in form.changed_data},
            user=request.user,
            meta=RequestMeta.from_request(request),
        )

    def delete_model(self, request, obj):
        try:
            actions.collection_delete(
                collection=obj, user=request.user, meta=RequestMeta.from_request(request)
            )
        except PermissionDenied as exc:
            self.message_user(request, str(exc), level=messages.ERROR)

    def delete_queryset(self, request, queryset):
        for collection in queryset:
            self.delete_model(request, collection)

    def save_formset(self, request, form, formset, change):
        # The admin's change view runs in one transaction: grants and their entries commit
        # together.
        super().save_formset(request, form, formset, change)
        meta = RequestMeta.from_request(request)
        changes = [(g, "manage" if g.can_manage else "read") for g in formset.new_objects]
        changes += [(g, "manage" if g.can_manage else "read") for g, _ in formset.changed_objects]
        changes += [(g, "none") for g in formset.deleted_objects]
        for grant, access in changes:
            actions.grant_recorded(
                collection=form.instance, group=grant.group, access=access,
                user=request.user, meta=meta,
            )  # fmt: skip


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    """Documents are uploaded on the collection page; here they are listed, re-ingested or
    erased (both audited)."""

    list_display = ["name", "collection", "status", "status_message", "page_count", "chunk_count"]
    list_filter = ["status", "collection"]
    search_fields = ["name", "sha256", "source_path"]
    exclude = ["text"]
    actions = ["reingest"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Re-ingest the selected documents")
    def reingest(self, request, queryset):
        queued = sum(
            actions.document_reingest(
                document=document, user=request.user, meta=RequestMeta.from_request(request)
            )
            for document in queryset
        )
        self.message_user(request, f"{queued} document(s) queued again.")

    def delete_model(self, request, obj):
        try:
            actions.document_erase(
                document=obj, user=request.user, meta=RequestMeta.from_request(request)
            )
        except PermissionDenied as exc:
            self.message_user(request, str(exc), level=messages.ERROR)

    def delete_queryset(self, request, queryset):
        for document in queryset:
            self.delete_model(request, document)


admin.site.unregister(User)


@admin.register(User)
class AttestUserAdmin(UserAdmin):
    """Role changes (group membership) and deletions are audited."""

    def delete_model(self, request, obj):
        with transaction.atomic():
            actions.user_deleted(
                target=obj, user=request.user, meta=RequestMeta.from_request(request)
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            self.delete_model(request, user)

    def save_related(self, request, form, formsets, change):
        before = list(form.instance.groups.values_list("name", flat=True)) if change else []
        super().save_related(request, form, formsets, change)
        after = list(form.instance.groups.values_list("name", flat=True))
        actions.roles_changed(
            target=form.instance, before=before, after=after, user=request.user,
            meta=RequestMeta.from_request(request),
        )  # fmt: skip
