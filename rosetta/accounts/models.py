from django.conf import settings
from django.db import DatabaseError, models
from django.utils import timezone

from rosetta.accounts.tokens import SCOPES, USER_SCOPES, hash_token, new_token, scopes_text
from rosetta.core.disk import is_disk_full


class ApiTokenQuerySet(models.QuerySet):
    def create_for(
        self, user, name: str = "cli", expires=None, scopes: tuple[str, ...] = USER_SCOPES
    ) -> tuple["ApiToken", str]:
        """Create a token and return it with its secret, which is never stored nor shown again."""
        secret = new_token()
        token = self.create(
            user=user, name=name, digest=hash_token(secret), hint=secret[:8], expires=expires,
            scopes=scopes_text(scopes),
        )  # fmt: skip
        return token, secret

    def usable(self):
        """Tokens that open something: of active users, not expired."""
        return self.filter(user__is_active=True).filter(
            models.Q(expires__isnull=True) | models.Q(expires__gt=timezone.now())
        )

    def user_for(self, secret: str):
        token = self.token_for(secret)
        return token.user if token is not None else None

    def token_for(self, secret: str) -> "ApiToken | None":
        """The usable token with this secret (its user loaded), noting that it was used."""
        token = self.usable().select_related("user").filter(digest=hash_token(secret)).first()
        if token is not None:
            ApiTokenQuerySet._touch(token)
        return token

    @staticmethod
    def _touch(token: "ApiToken") -> None:
        now = timezone.now()
        # Writing on every API call would serialise SQLite writers; a minute's precision is plenty.
        if token.last_used is None or (now - token.last_used).total_seconds() > 60:
            try:
                ApiToken.objects.filter(pk=token.pk).update(last_used=now)
            except DatabaseError as error:
                if not is_disk_full(error):
                    raise
                # A read must not fail because its by-the-way record cannot be written.


class ApiToken(models.Model):
    """A script's credential for the REST API and the gateway; stored as a SHA-256 digest."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8, help_text="First characters, to tell tokens apart.")
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True, help_text="None: until revoked.")
    scopes = models.CharField(
        max_length=64, default=" ".join(SCOPES), help_text="What it may do, space-separated (accounts.tokens.SCOPES)."
    )

    objects = ApiTokenQuerySet.as_manager()

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()

    def __str__(self) -> str:
        return f"{self.user} / {self.name} ({self.hint}…)"


class AccessEpochQuerySet(models.QuerySet):
    def bump(self, user_id: int) -> None:
        """End every task access the user was given so far: cookies name the epoch they were issued in."""
        if not self.filter(user_id=user_id).update(value=models.F("value") + 1):
            _, created = self.get_or_create(user_id=user_id, defaults={"value": 1})
            if not created:  # another bump created the row meanwhile; this one still counts
                self.filter(user_id=user_id).update(value=models.F("value") + 1)

    def current(self, user_id: int) -> int:
        return self.filter(user_id=user_id).values_list("value", flat=True).first() or 0


class AccessEpoch(models.Model):
    """Counts the times a user's access to their open task origins was ended (logging out,
    deactivation). The gateway accepts an access cookie only in the epoch it was issued in;
    users without a row are in epoch 0."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="access_epoch"
    )
    value = models.PositiveIntegerField(default=0)

    objects = AccessEpochQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.user_id}: {self.value}"


class SSHKey(models.Model):
    """A public key the user registered for the SSH front door (rosetta.gateway.ssh_door). It
    opens the door to the user's own tasks, and their SSH tasks' servers accept it. Not to be
    confused with the key the platform makes for each user on SSH resources
    (rosetta.computing.models.SSHIdentity)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100, help_text="The key's comment unless the user gave a name.")
    public_key = models.TextField(help_text="'<algorithm> <base64>', without the comment.")
    kind = models.CharField(max_length=16, help_text="ED25519, ECDSA, RSA, ... as ssh-keygen names them.")
    bits = models.PositiveIntegerField()
    # Unique per user, not across users: a public key is public, so a global rule would let
    # anyone who registers another's key first lock its owner out (and learn it is registered).
    # The door learns who connects from the login name, then checks the key is that user's.
    fingerprint = models.CharField(max_length=64, help_text="SHA256:..., as ssh-keygen -l prints it.")
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = "SSH public key"
        constraints = [
            models.UniqueConstraint(fields=["user", "fingerprint"], name="one_registration_per_user_and_key")
        ]

    def __str__(self) -> str:
        return f"{self.user} / {self.name} ({self.fingerprint})"
