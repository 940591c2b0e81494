"""Forms of the web UI. They check what a person can fix at the field it concerns;
rosetta.tasks.services stays the authority and re-checks everything."""

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q

from rosetta.accounts.ssh_keys import MAX_KEY_TEXT, MAX_NAME
from rosetta.catalog.models import Software
from rosetta.computing.models import MIN_MEMORY_MB, Resource
from rosetta.computing.services import check_request
from rosetta.core.validation import validate_env_name, validate_env_vars
from rosetta.storage.models import Storage
from rosetta.storage.services import storages_of
from rosetta.tasks.services import TaskRequest


class ResourceChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, resource: Resource) -> str:
        return f"{resource.name} — up to {resource.max_cpus:g} CPU, {resource.max_memory_mb} MiB"


class SoftwareChoiceField(forms.ModelChoiceField):
    """Every version of every entry the user may start, by its exact entry (names are per owner)."""

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def to_python(self, value):
        """An entry's id (the form's own choices), or a reference a link or script gives
        (NAME, NAME:VERSION, OWNER/NAME:VERSION; rosetta.catalog.services.resolve)."""
        if isinstance(value, str) and value and not value.isdigit() and self.user is not None:
            from rosetta.catalog.services import resolve
            from rosetta.core.errors import NotFound

            try:
                value = resolve(self.user, value).pk
            except NotFound as error:
                raise ValidationError(str(error), code="invalid_choice") from None
        return super().to_python(value)

    def label_from_instance(self, software: Software) -> str:
        owner = software.owner
        whose = "" if owner is None or owner == self.user else f" (by {owner.username})"
        hidden = " (hidden)" if software.status == "hidden" else ""
        return f"{software.name} {software.version}{whose}{hidden}"


def parse_environment(text: str) -> dict[str, str]:
    """``NAME=value`` lines to a dict; blank lines are skipped, errors name the line."""
    environment: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals:
            raise ValidationError(f"Line {number}: expected NAME=value, got {line[:40]!r}.")
        try:
            validate_env_name(name)
        except ValidationError as error:
            raise ValidationError(f"Line {number}: {' '.join(error.messages)}") from None
        if name in environment:
            raise ValidationError(f"Line {number}: {name} is set twice.")
        environment[name] = value
    validate_env_vars(environment)
    return environment


class StorageChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, storage) -> str:
        where = ", ".join(resource.name for resource in storage.mountable_on.all()) or "no resource"
        return f"{storage.name} at {storage.target}{' (read-only)' if storage.read_only else ''} — on {where}"


class TaskForm(forms.Form):
    software = SoftwareChoiceField(queryset=Software.objects.none(), empty_label=None)
    resource = ResourceChoiceField(queryset=Resource.objects.none(), to_field_name="name", empty_label=None)
    name = forms.CharField(
        required=False,
        max_length=63,
        help_text="Optional; unique among your tasks. Derived from the software when empty.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. analysis-1"}),
    )
    cpus = forms.FloatField(initial=1, min_value=0.1, label="CPUs", widget=forms.NumberInput(attrs={"step": "0.1"}))
    memory_mb = forms.IntegerField(initial=512, min_value=MIN_MEMORY_MB, label="Memory (MiB)")
    environment = forms.CharField(
        required=False,
        label="Environment variables",
        help_text="One NAME=value per line.",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "placeholder": "GREETING=hello"}),
    )
    partition = forms.CharField(
        required=False,
        max_length=64,
        help_text="Clusters only: where the job runs (the resource's default when empty).",
    )
    time_limit_minutes = forms.IntegerField(
        required=False, min_value=1, label="Time limit (minutes)", help_text="Clusters only: how long the job may run."
    )

    storages = StorageChoiceField(
        queryset=Storage.objects.none(),
        to_field_name="name",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Mounted where each says, on the resources it names; others are left out.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["software"].user = user
        self.fields["software"].queryset = (
            Software.objects.visible_to(user)
            .startable()
            .exclude(Q(status="hidden") & ~Q(owner=user))  # hidden: started by exact NAME:VERSION only
            .select_related("owner")
            .order_by("name", "-created")
        )
        self.fields["resource"].queryset = Resource.objects.filter(enabled=True)
        storages = storages_of(user).prefetch_related("mountable_on", "default_for")
        self.fields["storages"].queryset = storages
        if not self.is_bound:
            software = Software.objects.visible_to(user).filter(name=self.initial.get("software")).first()
            self.initial["storages"] = [
                s.name for s in storages if (s.default_for_software(software) if software else s.mounted_by_default)
            ]

    def clean_name(self) -> str | None:
        return self.cleaned_data["name"].strip() or None

    def clean_environment(self) -> dict[str, str]:
        return parse_environment(self.cleaned_data["environment"])

    def clean(self):
        cleaned = super().clean()
        resource = cleaned.get("resource")
        if resource is not None:
            self._check_limits(resource, cleaned)
        return cleaned

    def _check_limits(self, resource: Resource, cleaned: dict) -> None:
        # Field by field, so the error sits next to the number to change.
        cpus, memory_mb = cleaned.get("cpus"), cleaned.get("memory_mb")
        if cpus is not None and cpus > resource.max_cpus:
            self.add_error("cpus", f"At most {resource.max_cpus:g} CPUs on {resource.name}.")
        if memory_mb is not None and memory_mb > resource.max_memory_mb:
            self.add_error("memory_mb", f"At most {resource.max_memory_mb} MiB on {resource.name}.")
        if self.errors or cpus is None or memory_mb is None:
            return
        try:  # a cluster's partition and its limits, as the resource's last check found them
            check_request(
                resource, cpus, memory_mb, cleaned.get("partition") or "", cleaned.get("time_limit_minutes") or 0
            )
        except ValidationError as error:
            self.add_error("partition" if "partition" in str(error) else "time_limit_minutes", error)

    def task_request(self) -> TaskRequest:
        data = self.cleaned_data
        return TaskRequest(
            software=data["software"].name,
            software_id=data["software"].pk,
            resource=data["resource"].name,
            name=data["name"],
            cpus=data["cpus"],
            memory_mb=data["memory_mb"],
            environment=data["environment"],
            partition=data.get("partition") or "",
            time_limit_minutes=data.get("time_limit_minutes") or 0,
            storages=[s.name for s in data.get("storages") or () if data["resource"] in s.mountable_on.all()],
        )


class TokenForm(forms.Form):
    name = forms.CharField(max_length=64, initial="cli", widget=forms.TextInput(attrs={"placeholder": "cli"}))


class SSHKeyForm(forms.Form):
    public_key = forms.CharField(
        label="Public key",
        max_length=MAX_KEY_TEXT,
        widget=forms.Textarea(
            attrs={
                "rows": 3,
                "spellcheck": "false",
                "autocomplete": "off",
                "placeholder": "ssh-ed25519 AAAAC3Nza... you@laptop",
            }
        ),
        help_text="The content of your public key file, e.g. ~/.ssh/id_ed25519.pub (never the private key).",
    )
    name = forms.CharField(label="Name", max_length=MAX_NAME, required=False, help_text="Default: the key's comment.")


class ResourceForm(forms.ModelForm):
    """A computing resource, as staff add and change it. The private key is write-only."""

    private_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
        help_text="The service account's private key (OpenSSH format). Never shown again; leave empty to keep it.",
    )

    class Meta:
        model = Resource
        fields = [
            "name", "description", "transport", "host", "port", "credentials", "username", "work_dir", "scheduler",
            "engine", "partition", "time_limit_minutes", "max_cpus", "max_memory_mb", "task_outbound", "pull_policy",
        ]  # fmt: skip
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
