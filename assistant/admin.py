"""Django admin: collections, grants, documents, users' roles and the (read-only) audit trail.

The ingest models are registered here, not in ingest/, because every change an administrator
makes is audited and the audit trail belongs to this app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html

from audit.append import RequestMeta
from ingest.models import Collection, CollectionGrant, Document

from . import access, actions, throttle
from .forms import ThrottledAdminAuthenticationForm

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.forms import BaseInlineFormSet, ModelForm
    from django.http import HttpRequest


def _staff(request: HttpRequest) -> User:
    """Who acts: the admin lets only a signed-in staff member in, never AnonymousUser."""
    return cast("User", request.user)


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

    def save_model(
        self, request: HttpRequest, obj: Collection, form: ModelForm[Collection], change: bool
    ) -> None:
        if not change:
            obj.created_by = _staff(request)
        super().save_model(request, obj, form, change)
        actions.collection_saved(
            collection=obj,
            created=not change,
            changes={f: str(form.cleaned_data.get(f)) for f in form.changed_data},
            user=_staff(request),
            meta=RequestMeta.from_request(request),
        )

    def delete_model(self, request: HttpRequest, obj: Collection) -> None:
        try:
            actions.collection_delete(
                collection=obj, user=_staff(request), meta=RequestMeta.from_request(request)
            )
        except PermissionDenied as exc:
            self.message_user(request, str(exc), level=messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        for collection in queryset:
            self.delete_model(request, collection)

    def save_formset(
        self,
        request: HttpRequest,
        form: ModelForm[Collection],
        formset: BaseInlineFormSet[CollectionGrant, Collection, ModelForm[CollectionGrant]],
        change: bool,
    ) -> None:
        # The admin's change view runs in one transaction: grants and their entries commit
        # together.
        super().save_formset(request, form, formset, change)
        meta = RequestMeta.from_request(request)
        changes = [(g, "manage" if g.can_manage else "read") for g in formset.new_objects]
        changes += [(g, "manage" if g.can_manage else "read") for g, _ in formset.changed_objects]
        changes += [(g, "none") for g in formset.deleted_objects]
        for grant, level in changes:
            access.grant_recorded(
                collection=form.instance,
                group=grant.group,
                access=level,
                user=_staff(request),
                meta=meta,
            )


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    """Documents are uploaded on the collection page; here they are listed, re-ingested or
    erased (both audited)."""

    list_display = ["name", "collection", "status", "status_message", "page_count", "chunk_count"]
    list_filter = ["status", "collection"]
    search_fields = ["name", "sha256", "source_path"]
    exclude = ["text"]
    actions = ["reingest"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Document | None = None) -> bool:
        return False

    @admin.action(description="Re-ingest the selected documents")
    def reingest(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        queued = sum(
            actions.document_reingest(
                document=document, user=_staff(request), meta=RequestMeta.from_request(request)
            )
            for document in queryset
        )
        self.message_user(request, f"{queued} document(s) queued again.")

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        try:
            actions.document_erase(
                document=obj, user=_staff(request), meta=RequestMeta.from_request(request)
            )
        except PermissionDenied as exc:
            self.message_user(request, str(exc), level=messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            self.delete_model(request, document)


admin.site.unregister(User)
# The admin's own sign-in says why a locked-out sign-in fails (the password backend refuses it).
admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(User)
class AttestUserAdmin(UserAdmin):
    """Deletions are audited here; changes to flags, permissions and groups wherever they
    are made (privileges.py); lifting a sign-in lockout is an audited action."""

    list_display = ("username", "email", "first_name", "last_name", "is_staff", "sign_in_locked")
    actions = ["unlock_sign_in"]

    @admin.display(description="Locked out", boolean=True)
    def sign_in_locked(self, obj: User) -> bool:
        return throttle.locked_out(obj.get_username())

    @admin.action(description="Lift the sign-in lockout of the selected users")
    def unlock_sign_in(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        meta = RequestMeta.from_request(request)
        unlocked = [
            user.get_username()
            for user in queryset
            if access.sign_in_unlock(username=user.get_username(), user=_staff(request), meta=meta)
        ]
        self.message_user(
            request,
            f"Lockout lifted for {', '.join(unlocked)}." if unlocked else "None was locked out.",
        )

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        with transaction.atomic():
            access.user_deleted(
                target=obj, user=_staff(request), meta=RequestMeta.from_request(request)
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            self.delete_model(request, user)
