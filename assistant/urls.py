from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import compliance_views, views
from .forms import ThrottledAuthenticationForm

portal = (
    [
        path("", views.home, name="home"),
        path("collections/<slug:slug>/", views.collection_detail, name="collection"),
        path("collections/<slug:slug>/status/", views.collection_status, name="status"),
        path("collections/<slug:slug>/actions/", views.collection_action, name="actions"),
        path(
            "collections/<slug:slug>/documents/<int:pk>/actions/",
            views.document_action,
            name="document_actions",
        ),
        path("ask/", views.ask, name="ask"),
        path("ask/stream/", views.ask_stream, name="ask_stream"),
        path("documents/<int:pk>/", views.document_view, name="document"),
        path("documents/<int:pk>/download/", views.document_download, name="download"),
        path("answers/<int:pk>/", views.answer_detail, name="answer"),
        path("answers/<int:pk>/feedback/", views.answer_feedback, name="feedback"),
        path("answers/<int:pk>/receipt.json", views.answer_receipt, name="receipt"),
        path("answers/<int:pk>/record.json", views.answer_record, name="record"),
    ],
    "portal",
)

compliance = (
    [
        path("", compliance_views.event_list, name="list"),
        path("events/<int:pk>/", compliance_views.event_detail, name="detail"),
        path("events/<int:pk>/receipt.json", compliance_views.event_receipt, name="receipt"),
        path("dashboard/", compliance_views.dashboard, name="dashboard"),
        path("export.<str:fmt>", compliance_views.export, name="export"),
        path("verify/", compliance_views.verify, name="verify"),
    ],
    "compliance",
)

urlpatterns = [
    path("", include(portal)),
    path("compliance/", include(compliance)),
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
