"""What documents become: collections, documents (original file + extracted text), chunks."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIMENSIONS = 384


class Collection(models.Model):
    """A named set of documents that users ask questions of."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    legal_hold = models.BooleanField(
        default=False,
        help_text="Under legal hold nothing in this collection may be erased or purged",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CollectionGrant(models.Model):
    """A group may read and ask in a collection; with `can_manage` also upload and erase."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="grants")
    group = models.ForeignKey("auth.Group", on_delete=models.CASCADE, related_name="grants")
    can_manage = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["collection", "group"], name="grant_unique_group")
        ]

    def __str__(self) -> str:
        return f"{self.group} -> {self.collection} ({'manage' if self.can_manage else 'read'})"


class Patient(models.Model):
    """A person whose clinical records are in a collection (FHIR, C-CDA, text exports).

    One patient's documents in several formats point at the same row: linked on a shared
    identifier value (the MRN or the source system's patient id), else on name and birth date
    (see ingest/records.py)."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="patients")
    given = models.CharField(max_length=200, blank=True)
    family = models.CharField(max_length=200, blank=True)
    # "given family" in lower case, spaces collapsed: what questions are matched against.
    name_key = models.CharField(max_length=400, blank=True, db_index=True)
    birth_date = models.DateField(null=True, blank=True)
    gender = models.CharField(max_length=40, blank=True)
    identifiers = models.JSONField(
        default=list, blank=True, help_text="[{system, value, type}] as the records state them"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["family", "given", "id"]
        indexes = [models.Index(fields=["collection", "name_key"], name="patient_name_idx")]

    def __str__(self) -> str:
        return self.name or f"patient {self.pk}"

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.given, self.family) if p)


# Waiting for a worker or being ingested (Document.Status values).
PENDING_STATUSES = ("queued", "parsing", "ocr", "embedding")


def document_upload_to(instance: Document, filename: str) -> str:
    # Content-addressed under the collection: no user-chosen path reaches the filesystem.
    return f"originals/{instance.collection_id}/{instance.sha256[:2]}/{instance.sha256}"


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PARSING = "parsing", "Parsing"
        OCR = "ocr", "OCR"
        EMBEDDING = "embedding", "Embedding"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    name = models.CharField(max_length=255, help_text="The file name as uploaded")
    file = models.FileField(upload_to=document_upload_to, max_length=500)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    mime_type = models.CharField(max_length=100, blank=True)
    source_path = models.CharField(
        max_length=1000, blank=True, help_text="The path the file was ingested from, if any"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    status_message = models.TextField(blank=True, help_text="Why the document failed, in words")
    page_count = models.PositiveIntegerField(null=True, blank=True)
    pages = models.JSONField(
        default=list,
        blank=True,
        help_text='Per page: [{"page": 1, "ocr": true, "confidence": 91.2}, ...]',
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
        help_text="The e-mail message this file was attached to",
    )
    chunk_count = models.PositiveIntegerField(default=0)
    text = models.TextField(blank=True, help_text="Extracted text; chunk offsets point into it")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    patient = models.ForeignKey(
        Patient,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="documents",
        help_text="The patient a clinical record is about (one patient per document)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ingested_at = models.DateTimeField(null=True, blank=True)
    # Ingestion bookkeeping (ingest/leases.py, ingest/services.py: documents_recover). A worker
    # holds a document while it ingests it: no other worker claims it before the lease expires,
    # and the holder renews it while it works.
    lease_owner = models.CharField(
        max_length=200, blank=True, help_text="The worker ingesting the document (host:pid:token)"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Times a worker started ingesting it since it was last queued"
    )
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it was last handed to be ingested; empty when the task could not be sent",
    )

    class Meta:
        ordering = ["-created_at", "id"]
        permissions = [("download_document", "Can download original files")]
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "sha256"], name="document_unique_sha256_per_collection"
            )
        ]
        indexes = [
            models.Index(fields=["collection", "status"]),
            # The periodic recovery reads only pending documents, however many are finished.
            models.Index(
                fields=["dispatched_at"],
                name="document_pending_idx",
                condition=models.Q(status__in=PENDING_STATUSES),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_pending(self) -> bool:
        return self.status in PENDING_STATUSES

    @property
    def ocr_pages(self) -> list[dict]:
        """The pages whose text came from OCR, with their mean word confidence."""
        return [p for p in self.pages or [] if p.get("ocr")]


class Chunk(models.Model):
    """A passage of a document: exact character range of Document.text, its page, its vector."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # Denormalised from the document so retrieval filters by collection without a join.
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    start = models.PositiveIntegerField(help_text="Offset of the first character in Document.text")
    end = models.PositiveIntegerField(help_text="Offset just past the last character")
    page = models.PositiveIntegerField(null=True, blank=True)
    page_end = models.PositiveIntegerField(null=True, blank=True)
    heading = models.CharField(max_length=500, blank=True)
    # Clinical records: where each fact in the chunk came from ("Condition/<id>",
    # "C-CDA Problems/conditions-desc-1", ...), shown with its citation.
    sources = models.JSONField(default=list, blank=True)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    embedding_model = models.CharField(max_length=200)
    search_vector = models.GeneratedField(
        expression=SearchVector("text", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document_id", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal"),
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="chunk_span"
            ),
        ]
        indexes = [
            # ef_construction 128 (pgvector's default is 64): ANN recall@10 at 1M chunks under a
            # 10% collection filter 0.941 -> 0.979, for twice the build time
            # (docs/performance.md, retrieval at scale).
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=128,
                opclasses=["vector_cosine_ops"],
            ),
            # Collection first (btree_gin), so the full-text arm's bitmap holds only the rows
            # of the collections asked about: its heap work follows what the user may read,
            # not the size of the whole table (docs/performance.md, retrieval at scale).
            GinIndex(name="chunk_collection_search_gin", fields=["collection", "search_vector"]),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"
