from django.urls import re_path
from drf_spectacular.views import SpectacularAPIView

from . import views
from .errors import api_not_found

app_name = "api"

urlpatterns = [
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^ask/?$", views.AskView.as_view(), name="ask"),
    re_path(r"^questions/?$", views.QuestionListView.as_view(), name="questions"),
    re_path(
        r"^questions/(?P<pk>[0-9]{1,18})/?$", views.QuestionDetailView.as_view(), name="question"
    ),
    re_path(r"^collections/?$", views.CollectionListView.as_view(), name="collections"),
    re_path(
        r"^collections/(?P<slug>[-a-zA-Z0-9_]+)/documents/?$",
        views.CollectionDocumentsView.as_view(),
        name="documents",
    ),
    re_path(
        r"^documents/(?P<pk>[0-9]{1,18})/?$", views.DocumentDetailView.as_view(), name="document"
    ),
    re_path(r"^audit/events/?$", views.AuditListView.as_view(), name="audit"),
    re_path(
        r"^audit/events/(?P<pk>[0-9]{1,18})/?$", views.AuditDetailView.as_view(), name="audit_event"
    ),
    re_path(r"^audit/export/?$", views.AuditExportView.as_view(), name="audit_export"),
    re_path(r"^.*$", api_not_found),
]
