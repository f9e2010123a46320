"""The audit trail's tables: entries, chain-check results, the Merkle tree, checkpoints.

These models moved here from the `assistant` app (migration audit 0001) and keep their tables,
named `assistant_*`: the SQL functions and triggers of assistant's migrations 0002 to 0014
(append, append-only, redaction, search vector, erasure index) act on those names.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models

from .fields import JSONKeyTransform, JSONTextField


class AuditEvent(models.Model):
    """One entry of the append-only audit trail, chained by hash to the entry before it.

    A PostgreSQL trigger rejects UPDATE and DELETE, except the one sanctioned change: replacing
    the payload with a tombstone (erasure, retention) while every hash stays as it was.
    Foreign keys carry no database constraint so that deleting a user or a collection never
    touches the trail; the username and ids are kept as they were.
    """

    class Type(models.TextChoices):
        # Committed before a streamed answer's first token is shown; the answer's entry (or a
        # withdrawal, when the answer could not be stored) names it (issue 19).
        QUESTION_ASKED = "question.asked", "Question asked (answer streaming)"
        QUESTION_ANSWERED = "question.answered", "Question answered"
        QUESTION_REFUSED = "question.refused", "Question refused"
        QUESTION_WITHDRAWN = "question.withdrawn", "Answer withdrawn (could not be recorded)"
        MODEL_FAILED = "model.failed", "Model failed"
        FEEDBACK = "answer.feedback", "Answer feedback"
        LOGIN = "auth.login", "Signed in"
        LOGIN_FAILED = "auth.login_failed", "Failed sign-in"
        LOCKED_OUT = "auth.locked_out", "Locked out"
        ADDRESS_LOCKED = "auth.address_locked", "Address locked out"
        LOGIN_REFUSED = "auth.login_refused", "Sign-in refused while locked out"
        UNLOCKED = "auth.unlocked", "Lockout lifted"
        LOGOUT = "auth.logout", "Signed out"
        COLLECTION_CREATED = "collection.created", "Collection created"
        COLLECTION_CHANGED = "collection.changed", "Collection changed"
        COLLECTION_DELETED = "collection.deleted", "Collection deleted"
        USER_DELETED = "user.deleted", "User deleted"
        DOCUMENT_UPLOADED = "document.uploaded", "Document uploaded"
        DOCUMENT_REINGESTED = "document.reingested", "Document re-ingested"
        DOCUMENT_ERASED = "document.erased", "Document erased"
        DOCUMENT_DELETED = "document.deleted", "Document deleted (trail kept)"
        DOCUMENT_REJECTED = "document.rejected", "Document refused at upload"
        DOCUMENTS_CANCELLED = "documents.cancelled", "Queued documents cancelled"
        COLLECTION_REINGESTED = "collection.reingested", "Collection re-ingested"
        GRANT_CHANGED = "grant.changed", "Grant changed"
        ROLE_CHANGED = "role.changed", "Role changed"
        USER_FLAGS_CHANGED = "user.flags_changed", "Superuser, staff or active flag changed"
        PERMISSION_CHANGED = "permission.changed", "Permissions changed"
        SSO_LINKED = "sso.linked", "Single sign-on identity linked"
        SSO_LAPSED = "sso.lapsed", "Identity provider stopped vouching for a user"
        AUDIT_EXPORTED = "audit.exported", "Audit exported"
        AUDIT_PURGED = "audit.purged", "Audit entries purged"
        SETTINGS_CHANGED = "settings.changed", "Settings changed"
        TOKEN_CREATED = "token.created", "API token created"
        TOKEN_REVOKED = "token.revoked", "API token revoked"

    created_at = models.DateTimeField(db_index=True)
    # event_type, actor and collection are indexed together with the id (Meta.indexes), which
    # is how the workspace filters and pages them; single-column indexes would only slow
    # every append (issue 9).
    event_type = models.CharField(max_length=50)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    collection = models.ForeignKey(
        "ingest.Collection",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    flagged = models.BooleanField(default=False, help_text="Refused or unsupported answer")
    summary = models.CharField(max_length=300, blank=True)
    search_text = models.TextField(blank=True, help_text="Words searchable in the workspace")
    # to_tsvector('english', search_text), computed by attest_audit_append before it takes the
    # chain's lock (migration 0011); a trigger fills it for any other insert and recomputes it
    # when search_text changes (erasure), so it always matches search_text.
    search_vector = SearchVectorField(null=True, editable=False)
    # `json`, not `jsonb`: the exact canonical bytes the payload hash was taken over, so that
    # verify hashes the stored text without parsing it (migration 0012, assistant/fields.py).
    payload = JSONTextField()
    seq = models.BigIntegerField(
        unique=True, help_text="Position in the chain from 0: the entry's Merkle leaf index"
    )
    payload_hash = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64)  # unique: Meta.constraints
    redacted = models.BooleanField(default=False)
    redacted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "assistant_auditevent"
        ordering = ["-id"]
        permissions = [("review_audit", "Can review and export the audit trail")]
        indexes = [
            models.Index(fields=["actor", "-id"], name="audit_actor_idx"),
            models.Index(fields=["collection", "-id"], name="audit_collection_idx"),
            models.Index(fields=["event_type", "-id"], name="audit_type_idx"),
            models.Index(
                fields=["-id"], condition=models.Q(flagged=True), name="audit_flagged_idx"
            ),
            GinIndex(name="audit_search_gin", fields=["search_vector"]),
            # `payload__answer_id=` (an answer's entry: receipts, `ask`) compiles to exactly
            # this expression (assistant/fields.py), so it is found without a scan.
            models.Index(JSONKeyTransform("answer_id", "payload"), name="audit_answer_id_idx"),
        ]
        # A constraint rather than unique=True, which would add a second (LIKE) index.
        constraints = [
            models.UniqueConstraint(
                fields=["entry_hash"], name="assistant_auditevent_entry_hash_key"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.event_type} by {self.actor_username or '-'}"


class ChainCheck(models.Model):
    """The result of the last `audit verify` run, shown as the workspace's chain badge."""

    checked_at = models.DateTimeField()
    entries = models.PositiveBigIntegerField()
    redacted = models.PositiveBigIntegerField(default=0)
    ok = models.BooleanField()
    first_broken_id = models.BigIntegerField(null=True)
    reason = models.CharField(max_length=200, blank=True)
    seconds = models.FloatField(default=0)

    class Meta:
        db_table = "assistant_chaincheck"
        ordering = ["-checked_at"]
        get_latest_by = "checked_at"

    def __str__(self) -> str:
        return f"{self.checked_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'BROKEN'}"


class AuditTreeNode(models.Model):
    """A complete subtree of the RFC 6962 Merkle tree over the audit entries.

    (level, index) covers leaves index * 2**level .. (index + 1) * 2**level - 1. Leaves
    (level 0) are not stored: they are SHA-256(0x00 || payload_hash) of the entry whose `seq`
    is the index. Nodes are written in the transaction of the entry that completes them and
    never change (a trigger rejects UPDATE and DELETE), so the root and any proof for any tree
    size up to the current one can be computed from O(log n) rows.
    """

    pk = models.CompositePrimaryKey("level", "index")
    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hash = models.BinaryField(max_length=32)

    class Meta:
        db_table = "assistant_audittreenode"

    def __str__(self) -> str:
        return f"node {self.level}/{self.index}"


class AuditCheckpoint(models.Model):
    """An index of the signed checkpoints written to AUDIT_CHECKPOINT_DIR.

    The files are the evidence (kept outside the database, ideally on WORM storage); this table
    only lets receipts find the latest checkpoint that covers an entry. Everything here is
    checked against the signature before it is trusted.
    """

    tree_size = models.BigIntegerField(db_index=True)
    root_hash = models.CharField(max_length=64)
    timestamp = models.CharField(max_length=40, help_text="UTC, ISO 8601, as signed")
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=100)
    file_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "assistant_auditcheckpoint"
        ordering = ["-tree_size", "-id"]

    def __str__(self) -> str:
        return f"checkpoint {self.tree_size} {self.root_hash[:12]}"
