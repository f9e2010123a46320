"""Issue 19: the permission matrix of identifier redaction (REDACT_IDENTIFIERS=true).

Every portal page, API endpoint and download, as each role (reader, manager, compliance,
admin), over every object id in the database, other collections' and other users' included
(guessed ids), and a few past the last. A leak is a known patient's name, birth date or
identifier shown to a role without `assistant.view_identifiers`; a passage of a collection the
role may not read, outside the compliance workspace (where officers read quoted passages by
design); or an audit filter whose answer differs between an identifier that is in the trail and
one that is not. Originals downloaded by a collection's manager are not redacted by design
(docs/security.md) and are counted apart.

Run with `-s` to see the figures (docs/security.md, issue 19)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from django.test import Client

from assistant import llm
from assistant.api.tokens import token_create
from assistant.models import Question
from assistant.roles import roles_ensure
from audit import checkpoints
from audit.models import AuditEvent
from ingest.models import Document
from tests.factories import grant, ingest_bytes, make_collection

from .redaction_data import ABEL, LISANDRA, RECORDS, body, leaks, secrets, sign, upload

pytestmark = pytest.mark.django_db
ROLES = ("reader", "manager", "compliance", "admin")
NOTES = {
    "ward-7": "Ward seven keeps the crash cart beside bay four.",
    "ward-9": "Ward nine keeps the oxygen store key in the blue cabinet.",
}
QUESTION = "What allergies does Abel Muller have?"  # each role asks it; shown back to them


@pytest.fixture
def hospital(settings, tmp_path, django_user_model):
    settings.LLM_BACKEND = "extractive"
    settings.REDACT_IDENTIFIERS = True
    sign(tmp_path, settings)
    llm.get_llm.cache_clear()
    groups = roles_ensure()
    ward7, ward9 = make_collection("Ward 7", "ward-7"), make_collection("Ward 9", "ward-9")
    upload(ward7, RECORDS / "fhir" / f"{ABEL}.json")
    upload(ward7, RECORDS / "text" / f"{ABEL}.txt")
    upload(ward9, RECORDS / "ccda" / f"{LISANDRA}.xml")
    for collection in (ward7, ward9):
        ingest_bytes(collection, f"{collection.slug}-note.txt", NOTES[collection.slug].encode())
    users = {
        name: django_user_model.objects.create_user(username=name, password="x" * 16)
        for name in (*ROLES, "nurse")
    }
    grant(ward7, users["reader"])
    grant(ward7, users["nurse"])
    grant(ward7, users["manager"], manage=True, group_name="managers-of-ward-7")
    users["compliance"].groups.add(groups["compliance"])
    users["admin"].groups.add(groups["admin"])
    values = {**secrets(ward7), **{f"ward-9 {k}": v for k, v in secrets(ward9).items()}}
    nurse = Client()
    nurse.force_login(users["nurse"])
    ssn = next(v for k, v in values.items() if "Social Security" in k)
    asked = nurse.post("/ask/", {"collection": "ward-7", "question": f"Is {ssn} Abel Muller's?"})
    question = Question.objects.get(user=users["nurse"])
    nurse.post(f"/answers/{question.pk}/feedback/", {"helpful": "no", "comment": "abel muller"})
    assert asked.status_code == 302
    for name, slug, question in (
        ("reader", "ward-7", QUESTION),
        ("manager", "ward-7", QUESTION),
        ("admin", "ward-9", "What allergies does Lisandra Schroeder have?"),
    ):
        client = Client()
        client.force_login(users[name])
        client.post("/ask/", {"collection": slug, "question": question})
    checkpoints.checkpoint_write()
    yield users, values, ssn
    llm.get_llm.cache_clear()


def _requests(client: Client, auth: dict[str, str]) -> list[tuple[str, str, object]]:
    """(surface, label, response) for every page, endpoint and download, over every id."""
    docs = list(Document.objects.order_by("id").values_list("id", flat=True))
    questions = list(Question.objects.order_by("id").values_list("id", flat=True))
    events = list(AuditEvent.objects.order_by("id").values_list("id", flat=True))
    docs += [docs[-1] + 1]
    questions += [questions[-1] + 1]
    events += [events[-1] + 1]
    ask = {"collection": "ward-7", "question": QUESTION}
    get = client.get
    out: list[tuple[str, str, object]] = [("portal", "home", get("/"))]
    for slug in NOTES:
        out += [
            ("portal", f"collection {slug}", get(f"/collections/{slug}/")),
            ("portal", f"status {slug}", get(f"/collections/{slug}/status/")),
            ("api", f"documents of {slug}", get(f"/api/v1/collections/{slug}/documents", **auth)),
            ("portal", f"ask {slug}", client.post("/ask/", {**ask, "collection": slug})),
        ]
    for pk in docs:
        chunk = Document.objects.filter(pk=pk).values_list("chunks__id", flat=True).first()
        out += [
            ("portal", f"viewer {pk}", get(f"/documents/{pk}/")),
            ("portal", f"viewer {pk} passage", get(f"/documents/{pk}/", {"chunk": chunk or 1})),
            ("download", f"original {pk}", get(f"/documents/{pk}/download/")),
            ("api", f"document {pk}", get(f"/api/v1/documents/{pk}", **auth)),
        ]
    for pk in questions:
        out += [
            ("portal", f"answer {pk}", get(f"/answers/{pk}/")),
            ("download", f"receipt {pk}", get(f"/answers/{pk}/receipt.json")),
            ("download", f"record {pk}", get(f"/answers/{pk}/record.json")),
            ("api", f"question {pk}", get(f"/api/v1/questions/{pk}", **auth)),
        ]
    out += [
        ("portal", "ask stream", client.post("/ask/stream/", ask)),
        ("api", "collections", get("/api/v1/collections", **auth)),
        ("api", "questions", get("/api/v1/questions", **auth)),
        ("api", "ask", client.post("/api/v1/ask", ask, content_type="application/json", **auth)),
    ]
    for stream in ("sse", "ndjson"):
        out.append(
            (
                "api",
                f"ask {stream}",
                client.post(
                    "/api/v1/ask",
                    {**ask, "stream": stream},
                    content_type="application/json",
                    **auth,
                ),
            )
        )
    out += [
        ("workspace", "entries", get("/compliance/")),
        ("workspace", "dashboard", get("/compliance/dashboard/")),
        ("workspace", "api entries", get("/api/v1/audit/events", **auth)),
        ("workspace", "export csv", get("/compliance/export.csv")),
        ("workspace", "export jsonl", get("/compliance/export.jsonl")),
        ("workspace", "api export", get("/api/v1/audit/export", **auth)),
    ]
    for pk in events:
        out += [
            ("workspace", f"entry {pk}", get(f"/compliance/events/{pk}/")),
            ("workspace", f"entry receipt {pk}", get(f"/compliance/events/{pk}/receipt.json")),
            ("workspace", f"api entry {pk}", get(f"/api/v1/audit/events/{pk}", **auth)),
        ]
    return out


def _oracle(client: Client, auth: dict[str, str], ssn: str) -> list[tuple[str, bool]]:
    """Audit filters asked about an identifier in the trail and about one that is not: the
    answers must not differ (requests counted two per pair)."""
    absent = "999-00-0000" if ssn != "999-00-0000" else "999-00-0001"
    pairs = []
    for name, present, decoy in (("SSN", ssn, absent), ("name", "Muller251", "Zapata999")):
        for where in ("q", "patient"):
            a = client.get("/compliance/", {where: present})
            b = client.get("/compliance/", {where: decoy})
            ids = [re.findall(r"/compliance/events/(\d+)/", body(r)) for r in (a, b)]
            pairs.append((f"workspace {where}={name}", ids[0] != ids[1]))
        a, b = (client.get("/api/v1/audit/events", {"q": v}, **auth) for v in (present, decoy))
        pairs.append((f"api q={name}", body(a).count('"id"') != body(b).count('"id"')))
        a, b = (client.get("/compliance/export.jsonl", {"q": v}) for v in (present, decoy))
        pairs.append((f"export q={name}", body(a).count("\n") != body(b).count("\n")))
    return pairs


def _passages(role: str) -> dict[str, str]:
    """The passages the role may not read outside the workspace."""
    readable = {"reader": {"ward-7"}, "manager": {"ward-7"}}.get(role, set())
    return {slug: note for slug, note in NOTES.items() if slug not in readable}


def test_no_identifier_or_passage_reaches_a_role_that_may_not_see_it(hospital):
    users, values, ssn = hospital
    tried: Counter[str] = Counter()
    found: dict[str, list[str]] = {role: [] for role in ROLES}
    by_policy = 0
    for role in ROLES:
        client = Client()
        client.force_login(users[role])
        auth = {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=users[role], name='m').key}"}
        for surface, label, response in _requests(client, auth):
            tried[role] += 1
            # Readers and managers are shown the question they typed; officers ask nothing.
            text = body(response, own=QUESTION if role != "compliance" else "")
            if role == "admin":
                continue  # sees every collection and every identifier
            shown = leaks(text, values)
            if shown and role == "manager" and label.startswith("original"):
                by_policy += 1  # the manager's own collection's original file, unredacted
                continue
            if surface != "workspace":
                shown += [slug for slug, note in _passages(role).items() if note in text]
            if shown:
                found[role].append(f"{label}: {', '.join(shown)}")
        if role == "compliance":
            for label, differs in _oracle(client, auth, ssn):
                tried[role] += 2
                if differs:
                    found[role].append(f"{label}: count differs")
        if role == "admin":
            page = body(client.get("/collections/ward-7/"))
            assert "Abel832 Muller251" in page  # unchanged for those who may see identifiers
    total = sum(len(v) for v in found.values())
    print(f"\nredaction matrix (issue 19): {sum(tried.values())} requests, {total} leaks")
    for role in ROLES:
        counted = "may see everything" if role == "admin" else f"{len(found[role]):>3} leaks"
        print(f"  {role:<10} {tried[role]:>4} requests  {counted}")
        for leak in found[role][:60]:
            print(f"      {leak}")
    print(f"  originals downloaded by their collection's manager (by design): {by_policy}")
    assert total == 0
