"""What users do with documents: questions, answers with citations, feedback, API tokens;
who single sign-on users are at their identity provider."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Question(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="questions"
    )
    collection = models.ForeignKey(
        "ingest.Collection", null=True, on_delete=models.SET_NULL, related_name="questions"
    )
    text = models.TextField()
    follows = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="follow_ups",
        help_text="The previous turn this question follows up",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return self.text[:80]


class Answer(models.Model):
    question = models.OneToOneField(Question, on_delete=models.CASCADE, related_name="answer")
    text = models.TextField(help_text="The answer exactly as shown to the user")
    refused = models.BooleanField(default=False, help_text="The documents did not answer")
    backend = models.CharField(max_length=30)
    model = models.CharField(max_length=200, blank=True)
    fallback_reason = models.CharField(
        max_length=300, blank=True, help_text="Why the extractive answer replaced the model's"
    )
    latency_ms = models.PositiveIntegerField(default=0)
    stopped = models.BooleanField(default=False, help_text="The user stopped the answer")
    unsupported = models.JSONField(
        default=list, blank=True, help_text="Sentences their cited passages do not support"
    )
    removed_citations = models.JSONField(
        default=list, blank=True, help_text="Citation numbers that named no passage (removed)"
    )
    audit_event = models.ForeignKey(
        "audit.AuditEvent",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        help_text="The audit entry that records this answer (its receipt's leaf)",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        permissions = [
            (
                "view_identifiers",
                "Can see identifiers (e-mail, phone, SSN, MRN, date of birth) unredacted",
            )
        ]

    def __str__(self) -> str:
        return self.text[:80]

    @property
    def is_extractive(self) -> bool:
        return self.backend == "extractive"

    @property
    def is_from_record(self) -> bool:
        """Quoted from a patient's record, section by section (assistant/patient_answers.py)."""
        return self.backend == "record"


class Feedback(models.Model):
    """A user's thumbs up or down on an answer, with an optional comment (audited)."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    helpful = models.BooleanField()
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{'up' if self.helpful else 'down'} on answer {self.answer_id}"


class Citation(models.Model):
    """A passage shown with an answer, numbered as in the prompt. The text is a snapshot."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="citations")
    n = models.PositiveSmallIntegerField()
    chunk = models.ForeignKey(
        "ingest.Chunk", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    document = models.ForeignKey(
        "ingest.Document", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    document_name = models.CharField(max_length=255)
    page = models.PositiveIntegerField(null=True)
    heading = models.CharField(max_length=500, blank=True)
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    text = models.TextField()
    score = models.FloatField()
    cited = models.BooleanField(default=False, help_text="The answer text refers to it")

    class Meta:
        ordering = ["answer_id", "n"]
        constraints = [models.UniqueConstraint(fields=["answer", "n"], name="citation_unique_n")]

    def __str__(self) -> str:
        return f"[{self.n}] {self.document_name} p.{self.page}"


class ApiToken(models.Model):
    """A REST API token. Only the SHA-256 of the key is stored; the key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for")
    prefix = models.CharField(max_length=12, db_index=True, help_text="First characters, to tell")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name}) for {self.user_id}"


class SsoIdentity(models.Model):
    """Who a single sign-on user is at their identity provider: the ID token's issuer and
    subject (`sub`), which the provider never reassigns. Usernames change hands (a rename, a
    recycled account name), so they never decide whose account a sign-in opens (issue 19).

    Also the provider's standing for the user's API tokens (assistant/sso.py): the last
    refresh token (encrypted), when the provider last renewed it, and when it refused to.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity"
    )
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    refresh_token = models.TextField(blank=True, help_text="Encrypted (assistant/sso.py)")
    confirmed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the provider last vouched for the user"
    )
    lapsed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the provider refused to renew the user's sign-in"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique_sub")
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
