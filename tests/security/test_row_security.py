"""PostgreSQL row-level security: a query that forgets its collection filter still cannot
return another collection's documents or chunks inside a web request."""

import pytest
from django.db import connection

from assistant.api.tokens import token_create
from ingest import row_security
from ingest.models import Chunk
from tests.factories import grant, ingest_bytes, make_collection

pytestmark = pytest.mark.django_db


@pytest.fixture
def careless(settings):
    settings.ROOT_URLCONF = "tests.security.rls_urls"


@pytest.fixture
def ward_and_board(plain_user):
    ward = make_collection("Ward notes", "ward")
    ingest_bytes(ward, "ward.txt", b"Visiting hours on the ward are from two to four.")
    board = make_collection("Board", "board")
    ingest_bytes(board, "minutes.txt", b"The board approved the merger with Globex on Tuesday.")
    grant(ward, plain_user)
    return ward, board


def test_policies_are_installed_for_the_application_role():
    assert row_security.available()
    with connection.cursor() as c:
        c.execute(
            "SELECT tablename, policyname, roles FROM pg_policies"
            " WHERE tablename IN ('ingest_chunk', 'ingest_document') ORDER BY tablename"
        )
        rows = c.fetchall()
        c.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'attest_app'")
        assert c.fetchone() == (False, False)
    assert [(r[0], r[1]) for r in rows] == [
        ("ingest_chunk", "attest_readable"),
        ("ingest_document", "attest_readable"),
    ]


def test_an_unfiltered_query_in_a_portal_request_sees_only_granted_collections(
    client, plain_user, ward_and_board, careless
):
    ward, board = ward_and_board
    client.force_login(plain_user)
    body = client.get("/careless/").json()
    assert body["role"] == "attest_app"
    assert body["chunks"] and {c[0] for c in body["chunks"]} == {ward.id}
    assert {d[0] for d in body["documents"]} == {ward.id}
    assert "Globex" not in str(body)
    # Outside the request the owner sees everything again (workers, commands, this test).
    assert Chunk.objects.filter(collection=board).count() == 1
    with connection.cursor() as c:
        c.execute("SELECT current_user <> 'attest_app'")
        assert c.fetchone()[0]


def test_an_unfiltered_query_through_the_api_sees_only_the_token_users_collections(
    client, plain_user, ward_and_board, careless
):
    ward, _ = ward_and_board
    key = token_create(user=plain_user, name="t").key
    body = client.get("/careless-api/", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert {c[0] for c in body["chunks"]} == {ward.id}
    assert "Globex" not in str(body)


def test_anonymous_requests_see_no_rows_and_admins_see_all(
    client, admin_user, ward_and_board, careless
):
    body = client.get("/careless/").json()
    assert body["chunks"] == [] and body["documents"] == []
    client.force_login(admin_user)
    body = client.get("/careless/").json()
    assert {c[0] for c in body["chunks"]} == {c.id for c in ward_and_board}


def test_revoking_a_grant_hides_the_rows_on_the_next_request(
    client, plain_user, ward_and_board, careless
):
    client.force_login(plain_user)
    assert client.get("/careless/").json()["chunks"]
    plain_user.groups.clear()
    assert client.get("/careless/").json()["chunks"] == []


def test_full_text_weights_are_the_same_under_the_application_role(ward_and_board):
    """pg_stats hides statistics of RLS tables from the role; search reads them through the
    owner's function, so ranking does not change for web users."""
    with connection.cursor() as c:
        c.execute("ANALYZE ingest_chunk")
        c.execute("SELECT elems FROM attest_chunk_term_stats(current_schema())")
        as_owner = c.fetchone()
        row_security.apply(None)
        try:
            c.execute("SELECT elems FROM attest_chunk_term_stats(current_schema())")
            as_app = c.fetchone()
            c.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'ingest_chunk'")
            hidden = c.fetchone()[0]
        finally:
            row_security.reset()
    assert as_owner is not None and as_owner == as_app
    assert hidden == 0  # what the function works around
