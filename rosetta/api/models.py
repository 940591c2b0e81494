from django.conf import settings
from django.db import models


class IdempotentRequest(models.Model):
    """A POST made with an ``Idempotency-Key``, and the answer it got: a client that retries
    the same request with the same key gets that answer again instead of a second effect."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=255, help_text="Method and path the key was first used with.")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request body.")
    status = models.PositiveSmallIntegerField()
    response = models.JSONField(null=True, help_text="The answer's body; empty when it must not be shown twice.")
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="unique_idempotency_key_per_user")]
