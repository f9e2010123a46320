"""The portal: collections, questions, answers and the document viewer."""

from django.urls import path

from .views import answers, collections

app_name = "portal"

urlpatterns = [
    path("", collections.home, name="home"),
    path("collections/<slug:slug>/", collections.collection_detail, name="collection"),
    path("collections/<slug:slug>/status/", collections.collection_status, name="status"),
    path("collections/<slug:slug>/actions/", collections.collection_action, name="actions"),
    path(
        "collections/<slug:slug>/documents/<int:pk>/actions/",
        collections.document_action,
        name="document_actions",
    ),
    path("ask/", answers.ask, name="ask"),
    path("ask/stream/", answers.ask_stream, name="ask_stream"),
    path("documents/<int:pk>/", collections.document_view, name="document"),
    path("documents/<int:pk>/download/", collections.document_download, name="download"),
    path("answers/<int:pk>/", answers.answer_detail, name="answer"),
    path("answers/<int:pk>/feedback/", answers.answer_feedback, name="feedback"),
    path("answers/<int:pk>/receipt.json", answers.answer_receipt, name="receipt"),
    path("answers/<int:pk>/record.json", answers.answer_record, name="record"),
]
