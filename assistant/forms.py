from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from audit.append import RequestMeta

from . import throttle


class LockoutMessage(AuthenticationForm):
    """Says why a sign-in the lockout refused failed (the refusal itself is the password
    backend's, assistant/backends.py, so a form without this mixin refuses too)."""

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except forms.ValidationError:
            username = (self.cleaned_data.get("username") or "").strip()
            reason = throttle.refusal(
                username=username, address=RequestMeta.from_request(self.request).ip_address
            )
            if not reason:
                raise
        minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
        where = (
            "for this account" if reason == throttle.ACCOUNT_LOCKED else "from this network address"
        )
        raise forms.ValidationError(
            f"Too many failed sign-ins {where}. Try again in {minutes} minutes "
            "or ask an administrator.",
            code="locked_out",
        )


class ThrottledAuthenticationForm(LockoutMessage):
    """The portal's sign-in form."""


class ThrottledAdminAuthenticationForm(LockoutMessage, AdminAuthenticationForm):
    """The admin's sign-in form (staff only), with the same message."""


class AskForm(forms.Form):
    collection = forms.SlugField(widget=forms.HiddenInput)
    follows = forms.IntegerField(required=False, widget=forms.HiddenInput)
    question = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "Ask a question of these documents"}
        ),
    )


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any | None = None) -> list[Any]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(d, initial) for d in data]
        return [single(data, initial)]


class UploadForm(forms.Form):
    # A field named like BaseForm.files (the bound uploads); the form's metaclass moves it into
    # base_fields, so the attribute stays the uploads at run time.
    files = MultipleFileField(  # type: ignore[assignment]  # a field, not BaseForm.files
        help_text=(
            "PDF, Word, TXT, Markdown, HTML, e-mail (.eml), PNG, JPEG, TIFF; several at once, "
            "or .zip archives of them"
        )
    )
