from django.conf import settings
from django.db import models
from django.utils import timezone

from rosetta.accounts.tokens import hash_token, new_token


class ApiTokenQuerySet(models.QuerySet):
    def create_for(self, user, name: str = "cli") -> tuple["ApiToken", str]:
        """Create a token and return it with its secret, which is never stored nor shown again."""
        secret = new_token()
        token = self.create(user=user, name=name, digest=hash_token(secret), hint=secret[:8])
        return token, secret

    def user_for(self, secret: str):
        token = self.select_related("user").filter(digest=hash_token(secret), user__is_active=True).first()
        if token is None:
            return None
        ApiTokenQuerySet._touch(token)
        return token.user

    @staticmethod
    def _touch(token: "ApiToken") -> None:
        now = timezone.now()
        # Writing on every API call would serialise SQLite writers; a minute's precision is plenty.
        if token.last_used is None or (now - token.last_used).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used=now)


class ApiToken(models.Model):
    """A script's credential for the REST API and the gateway; stored as a SHA-256 digest."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8, help_text="First characters, to tell tokens apart.")
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.user} / {self.name} ({self.hint}…)"
