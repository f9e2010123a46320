"""Root URLs: the portal, the compliance workspace, sign-in, Django's admin and the API."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from assistant.forms import ThrottledAuthenticationForm

urlpatterns = [
    path("", include("assistant.urls")),
    path("compliance/", include("audit.urls")),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            authentication_form=ThrottledAuthenticationForm,
            extra_context={"sso": settings.OIDC_ENABLED},
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("assistant.api.urls")),
]

if settings.OIDC_ENABLED:
    urlpatterns.append(path("oidc/", include("mozilla_django_oidc.urls")))
