"""The project's URLs plus two deliberately careless views (tests only): each reads every
chunk and document with no collection filter at all, as a buggy query would."""

from django.db import connection
from django.http import JsonResponse
from django.urls import path
from rest_framework.response import Response

from assistant.api.views import AttestAPIView
from assistant.urls import urlpatterns as project_urls


def _unfiltered() -> dict:
    with connection.cursor() as c:
        c.execute("SELECT collection_id, text FROM ingest_chunk ORDER BY id")
        chunks = c.fetchall()
        c.execute("SELECT collection_id, name FROM ingest_document ORDER BY id")
        documents = c.fetchall()
        c.execute("SELECT current_user")
        role = c.fetchone()[0]
    return {"chunks": chunks, "documents": documents, "role": role}


def careless_view(request):
    return JsonResponse(_unfiltered())


class CarelessApiView(AttestAPIView):
    def get(self, request):
        return Response(_unfiltered())


urlpatterns = [
    path("careless/", careless_view),
    path("careless-api/", CarelessApiView.as_view()),
    *project_urls,
]
