import asyncssh
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models
from django.db.models import Q

from rosetta.computing import kinds
from rosetta.computing.errors import AccountRefused
from rosetta.core.sealing import seal, unseal


class Credentials(models.TextChoices):
    SERVICE = "service", "A service account of the platform"
    USER = "user", "Each user's own account"


class PullPolicy(models.TextChoices):
    MISSING = "missing", "Pull when missing"
    NEVER = "never", "Never pull (local images only)"
    ALWAYS = "always", "Always pull"


def this_node() -> str:
    """The machine this process runs on (ROSETTA_NODE): a local resource made here is its own."""
    return settings.NODE


class Resource(models.Model):
    """Somewhere tasks run: a composition of transport × scheduler × engine."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True, max_length=2000)
    # Kinds by name (rosetta.computing.kinds: built-in ones and plug-ins), each with its options.
    transport = models.CharField(max_length=16, choices=kinds.transport_choices, default="local")
    scheduler = models.CharField(max_length=16, choices=kinds.scheduler_choices, default="none")
    engine = models.CharField(max_length=16, choices=kinds.engine_choices, default="podman")
    transport_options = models.JSONField(default=dict, blank=True, help_text="Validated by the transport's kind.")
    scheduler_options = models.JSONField(default=dict, blank=True, help_text="Validated by the scheduler's kind.")
    engine_options = models.JSONField(default=dict, blank=True, help_text="Validated by the engine's kind.")
    pull_policy = models.CharField(max_length=8, choices=PullPolicy.choices, default=PullPolicy.MISSING)
    max_cpus = models.FloatField(default=2.0)
    max_memory_mb = models.PositiveIntegerField(default=4096)
    task_outbound = models.BooleanField(
        default=True, help_text="Tasks may open connections to other machines (to install packages, fetch data)."
    )
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    # A local resource is one machine's own engine: only the controller of the machine named
    # here (its ROSETTA_NODE) polls and acts on it, however many machines share the database.
    node = models.CharField(
        max_length=64,
        blank=True,
        default=this_node,
        help_text="For a local resource: the machine (ROSETTA_NODE) whose engine runs it.",
    )

    # Over SSH: where, as whom, and the host keys an operator checked and pinned.
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(default=22)
    credentials = models.CharField(max_length=8, choices=Credentials.choices, default=Credentials.SERVICE)
    username = models.CharField(max_length=64, blank=True, help_text="The service account's name on the host.")
    private_key = models.TextField(blank=True, help_text="The service account's SSH key, sealed.")
    host_keys = models.TextField(blank=True, help_text="The host's public keys, one per line, as pinned.")
    work_dir = models.CharField(
        max_length=255, default=".rosetta", help_text="The platform's directory there (relative to the account's home)."
    )
    # What `rosetta resources check` found (a batch scheduler's partitions and their limits, say).
    facts = models.JSONField(default=dict, blank=True, help_text="What the last check found.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def kind(self) -> str:
        return " · ".join(kinds.label(role, getattr(self, role)) for role in kinds.ROLES)

    @property
    def is_local(self) -> bool:
        """Tasks run on one machine's own engine: only that machine's controller drives them."""
        return kinds.transport_is_local(self.transport)

    @property
    def is_batch(self) -> bool:
        """Tasks are batch jobs: they take the scheduler's request options (a partition, a time limit)."""
        kind = kinds.find("scheduler", self.scheduler)
        return kind is not None and kind.batch

    def options_of(self, role: str) -> kinds.Options:
        """The options of the resource's kind of ``role``, validated, with the kind's defaults."""
        kind = kinds.get(role, getattr(self, role))
        return kind.parse_options(getattr(self, f"{role}_options"))

    @property
    def per_user(self) -> bool:
        """Tasks run as their owner's own account there (each user has a connection of their own)."""
        return self.credentials == Credentials.USER and not self.is_local

    def account_for(self, user) -> tuple[str, str]:
        """(account name, private key) the platform uses there on ``user``'s behalf; where users
        are their own accounts, AccountRefused while another user holds that account's name too."""
        if not self.per_user:
            return self.username, unseal(self.private_key) if self.private_key else ""
        identity = SSHIdentity.of(user)
        return identity.account(), unseal(identity.private_key)

    def set_private_key(self, text: str) -> None:
        asyncssh.import_private_key(text)  # refuses what is not a private key
        self.private_key = seal(text)

    def transport_key(self, user=None) -> tuple:
        """What identifies the machine and account reached (for ``user`` where each user is
        their own account): one connection each."""
        if self.is_local:
            return (self.transport, self.node)
        # The pinned keys too: a connection verified against other keys must not serve this resource.
        if not self.per_user:
            return (self.transport, self.host, self.port, self.username, self.host_keys)
        identity = SSHIdentity.of(user)
        # Whose connection it is too, the Rosetta user and the key that opened it: a name is only
        # what a user says, and a connection another user's key opened must never serve them.
        return (self.transport, self.host, self.port, identity.account(), self.host_keys, user.pk, identity.fingerprint)

    def backend_key(self, user=None) -> tuple:
        """What identifies the machinery behind this resource (not its limits or name)."""
        return (*self.transport_key(user), self.scheduler, self.engine, self.work_dir)

    def check_limits(self, cpus: float, memory_mb: int) -> None:
        """Raise ValidationError naming the offending option when a request does not fit."""
        if not 0.1 <= cpus <= self.max_cpus:
            raise ValidationError(f"cpus must be between 0.1 and {self.max_cpus:g} on {self.name}.")
        if not MIN_MEMORY_MB <= memory_mb <= self.max_memory_mb:
            raise ValidationError(
                f"memory must be between {MIN_MEMORY_MB} MiB and {self.max_memory_mb} MiB on {self.name}."
            )


MIN_MEMORY_MB = 16


def of_other_machines() -> Q:
    """The resources another machine drives: local resources of other nodes (rosetta.settings.NODE)."""
    return Q(transport__in=kinds.local_transports()) & ~Q(node=settings.NODE)


class Installation(models.Model):
    """What the machines sharing this database have in common: the instance id that labels the
    installation's containers and jobs everywhere (rosetta.computing.instance). One row."""

    instance = models.CharField(max_length=32)


class SSHIdentity(models.Model):
    """A user's own SSH key, for resources where each user runs as their own account: the
    platform made it, shows its public half on the Account page for the user to authorise on
    those machines, and keeps the private half sealed."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_identity")
    remote_username = models.CharField(
        max_length=64, blank=True, help_text="Your account's name on the resources (your Rosetta name when empty)."
    )
    # How the name came: proven (the key logs in as it) or given by an operator. Names given
    # before names were checked are not: they outrank no other user holding the account.
    remote_name_checked = models.BooleanField(default=False)
    remote_name_shared = models.BooleanField(
        default=False, help_text="An operator lets this user share the account with the others who hold it."
    )
    public_key = models.TextField()
    private_key = models.TextField(help_text="Sealed.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Two users who each proved a name cannot hold the same one, even if they ask at once.
            models.UniqueConstraint(
                fields=["remote_username"],
                condition=Q(remote_name_checked=True, remote_name_shared=False) & ~Q(remote_username=""),
                name="one_user_per_remote_name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} as {self.remote_name}"

    @property
    def remote_name(self) -> str:
        return self.remote_username or self.user.get_username()

    @property
    def fingerprint(self) -> str:
        return asyncssh.import_public_key(self.public_key).get_fingerprint("sha256")

    def account(self) -> str:
        """The account to log in as for this user, unless another Rosetta user holds its name
        too (AccountRefused) — with two exceptions: an operator let them all share it, or this
        user proved the name and the others hold it only by default (their Rosetta name)."""
        name = self.remote_name
        others = [identity_of(user) for user in holders(name).exclude(pk=self.user_id).select_related("ssh_identity")]
        if not others:
            return name
        if self.remote_name_shared and all(other is not None and other.remote_name_shared for other in others):
            return name
        if self.remote_username and self.remote_name_checked and all(_by_default(other) for other in others):
            return name
        raise AccountRefused(
            f"Rosetta does not log in as {name} for you: another Rosetta user's account there is called {name} "
            "too. Give your own account's name on the Resources page (Rosetta checks that your key logs in as "
            "it), or ask an operator (rosetta users set-remote-name)."
        )

    @classmethod
    def of(cls, user) -> "SSHIdentity":
        """The user's identity, made (with a new ed25519 key) the first time it is needed."""
        identity = cls.objects.filter(user=user).first()
        if identity is None:
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"rosetta:{user.get_username()}")
            identity, _ = cls.objects.get_or_create(
                user=user,
                defaults={"public_key": key.export_public_key().decode().strip(),
                          "private_key": seal(key.export_private_key().decode())},
            )  # fmt: skip
        return identity


def holders(name: str):
    """The Rosetta users whose remote name is ``name``: given, or by default (their Rosetta name)."""
    users = get_user_model().objects
    by_default = Q(**{get_user_model().USERNAME_FIELD: name}) & (
        Q(ssh_identity__isnull=True) | Q(ssh_identity__remote_username="")
    )
    return users.filter(Q(ssh_identity__remote_username=name) | by_default)


def identity_of(user) -> SSHIdentity | None:
    try:
        return user.ssh_identity
    except ObjectDoesNotExist:
        return None


def _by_default(identity: SSHIdentity | None) -> bool:
    return identity is None or not identity.remote_username
