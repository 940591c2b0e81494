"""Forms of the web UI. They check what a person can fix at the field it concerns;
rosetta.tasks.services stays the authority and re-checks everything."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db.models import Q

from rosetta.accounts.ssh_keys import MAX_KEY_TEXT, MAX_NAME
from rosetta.accounts.tokens import ADMIN, FILES, READ, SOFTWARE, TASKS, USER_SCOPES
from rosetta.catalog.models import Software
from rosetta.computing import kinds
from rosetta.computing.contract import TASK_HOME
from rosetta.computing.models import MIN_MEMORY_MB, Resource
from rosetta.computing.services import check_request
from rosetta.core.units import (
    MEMORY_EXAMPLES,
    TIME_EXAMPLES,
    format_memory,
    format_minutes,
    parse_memory_mb,
    parse_time_limit_minutes,
)
from rosetta.core.validation import validate_env_name, validate_env_vars, validate_task_name
from rosetta.storage.models import Storage
from rosetta.storage.services import storages_of
from rosetta.tasks import quotas
from rosetta.tasks.services import TaskRequest, default_resource

NAME_RULES = "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"


class ResourceChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, resource: Resource) -> str:
        return f"{resource.name} — up to {resource.max_cpus:g} CPU, {format_memory(resource.max_memory_mb)}"


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


class DescribedSelect(forms.Select):
    """A select whose options carry data-* attributes, for the page's script (limits, descriptions)."""

    def __init__(self, *args, describe=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.describe = describe

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        instance = getattr(value, "instance", None)
        if instance is not None and self.describe is not None:
            option["attrs"].update(self.describe(instance))
        return option


def describe_resource(resource: Resource) -> dict:
    described = {"data-max-cpus": f"{resource.max_cpus:g}", "data-max-memory": format_memory(resource.max_memory_mb)}
    if is_batch(resource):  # the batch fields' limits, for the page's script to show beside them
        described.update({
            "data-batch": "true",
            "data-partitions": " ".join(p["name"] for p in partitions_of(resource)),
            "data-default-partition": default_partition(resource),
            **{f"data-{name.replace('_', '-')}-help": help_text for name, help_text in batch_help(resource).items()},
        })  # fmt: skip
    return described


def quota_help(user, resource: Resource) -> str:
    """The quotas a start there must fit, with what is in use now."""
    standing = quotas.standing(user, resource)
    return f"Your quotas: {'; '.join(standing)}." if standing else f"No quota limits you on {resource.name}."


# -- batch schedulers: where a job runs and for how long -----------------------------------------
# The fields a batch resource adds to a request: these two of their own (a select of the partitions,
# a time with units), then a field per other option the schedulers' kinds take (request_fields).
BATCH_FIELDS = ("partition", "time_limit")
OWN_FIELDS = {"partition", "time_limit_minutes"}  # the request options BATCH_FIELDS stand for


def is_batch(resource: Resource) -> bool:
    return resource.is_batch


def partitions_of(resource: Resource) -> list[dict]:
    """The partitions and their limits as the resource's last check found them (`resources check`)."""
    return [p for p in resource.facts.get("partitions") or [] if isinstance(p, dict) and p.get("name")]


def default_partition(resource: Resource) -> str:
    """Where a job goes without a partition: the resource's own choice, else the scheduler's default."""
    return resource.scheduler_options.get("partition") or next(
        (p["name"] for p in partitions_of(resource) if p.get("default")), ""
    )


def partition_choices(resource: Resource) -> list[tuple[str, str]]:
    """The known partitions as a select offers them, the default marked; an empty choice first
    when the default is none of them (the scheduler then picks)."""
    default = default_partition(resource)
    names = [p["name"] for p in partitions_of(resource)]
    choices = [] if default in names else [("", f"{default} (default)" if default else "the resource's default")]
    return choices + [(name, f"{name} (default)" if name == default else name) for name in names]


def batch_help(resource: Resource) -> dict[str, str]:
    """What each batch field may be on ``resource``, in words: its partitions with their limits."""
    partitions = partitions_of(resource)
    default = default_partition(resource)
    if partitions:
        said = "; ".join(
            f"{p['name']}{' (default)' if p['name'] == default else ''}: "
            f"{'up to ' + format_minutes(p['max_minutes']) if p.get('max_minutes') else 'no time limit'}, "
            f"{p['cpus_per_node']} CPUs and {format_memory(p['memory_mb_per_node'])} per node"
            for p in partitions
        )
        partition = f"Partitions of {resource.name}: {said}."
    else:
        partition = f"Where the job runs on {resource.name} ({default or 'its default'} when empty)."
    default_minutes = resource.scheduler_options.get("time_limit_minutes") or 0
    return {"partition": partition, "time_limit": f"{TIME_EXAMPLES}; {format_minutes(default_minutes)} when empty."}


def _initial_software(user, chosen) -> Software | None:
    """The entry the form starts with: an id (a catalogue link, the last task) or a name."""
    visible = Software.objects.visible_to(user)
    if chosen is None or chosen == "":
        return None
    if isinstance(chosen, int) or str(chosen).isdigit():
        return visible.filter(pk=int(chosen)).first()
    return visible.filter(name=chosen).first()


def describe_software(software: Software) -> dict:
    return {"data-description": software.description or "No description."}


class TimeLimitField(forms.Field):
    """A batch job's time limit as Slurm and people write it: 90, 90m, 2h, 1h30m, 1-12:00:00."""

    widget = forms.TextInput

    def to_python(self, value):
        value = str(value).strip() if value is not None else ""
        if value in self.empty_values:
            return None
        try:
            return parse_time_limit_minutes(value)
        except ValueError as error:
            raise ValidationError(f"{error}.") from None


class MemoryField(forms.Field):
    """Memory written as everywhere else: 512M, 2G (a bare number is MiB)."""

    widget = forms.TextInput

    def to_python(self, value):
        value = str(value).strip() if value is not None else ""
        if len(value) > 16:
            raise ValidationError("That is not a memory size (e.g. 512M or 2G).")
        if value in self.empty_values:
            return None
        try:
            return parse_memory_mb(value)
        except ValueError as error:
            raise ValidationError(f"{error}.") from None


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


class StorageCheckboxes(forms.CheckboxSelectMultiple):
    """Each storage's box says where it is mounted and on which resources, for the page's script
    (what the task keeps follows the boxes and the resource)."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        storage = getattr(value, "instance", None)
        if storage is not None:
            option["attrs"]["data-mount"] = storage.target
            option["attrs"]["data-on"] = " ".join(resource.name for resource in storage.mountable_on.all())
        return option


class StorageChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, storage) -> str:
        where = ", ".join(resource.name for resource in storage.mountable_on.all()) or "no resource"
        home = " (your home, kept)" if storage.target == TASK_HOME else ""
        return f"{storage.name} at {storage.target}{home}{' (read-only)' if storage.read_only else ''} — on {where}"


KEPT_HELP = (
    f"Kept: the storages ticked that the resource can mount. The one at {TASK_HOME} is your home: notebooks, files, "
    "settings and packages you install with pip stay there from task to task. Not kept: everything else in the "
    "container (/tmp, packages installed outside your home)."
)


HOME_KEPT = f"Your home ({TASK_HOME}) is storage {{name}}: kept when the task ends."
HOME_SCRATCH = (
    f"Your home ({TASK_HOME}) is scratch space: it is lost when the task ends. "
    f"Tick a storage at {TASK_HOME} to keep it."
)


def home_note(home_kept_by: str | None) -> str:
    """What the form says of the task's home, for the storages ticked."""
    return HOME_KEPT.format(name=home_kept_by) if home_kept_by else HOME_SCRATCH


class TaskForm(forms.Form):
    software = SoftwareChoiceField(
        queryset=Software.objects.none(),
        empty_label=None,
        widget=DescribedSelect(describe=describe_software),
    )
    resource = ResourceChoiceField(
        queryset=Resource.objects.none(),
        to_field_name="name",
        empty_label=None,
        widget=DescribedSelect(describe=describe_resource),
    )
    name = forms.CharField(
        required=False,
        max_length=63,
        help_text=f"Optional: {NAME_RULES}; unique among your active tasks. Derived from the software when empty.",
        widget=forms.TextInput(
            attrs={"placeholder": "e.g. analysis-1", "pattern": r"[A-Za-z0-9][A-Za-z0-9._\-]{0,62}"}
        ),
    )
    cpus = forms.FloatField(
        initial=1, min_value=0.1, label="CPUs", widget=forms.NumberInput(attrs={"step": "0.1", "min": "0.1"})
    )
    memory_mb = MemoryField(
        initial="512M",
        label="Memory",
        help_text=MEMORY_EXAMPLES,
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off", "maxlength": "16"}),
    )
    environment = forms.CharField(
        required=False,
        label="Environment variables",
        help_text="One NAME=value per line.",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "placeholder": "GREETING=hello"}),
    )
    partition = forms.CharField(
        required=False,
        max_length=64,
        help_text="Where the job runs (the resource's default when empty).",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    time_limit = TimeLimitField(
        required=False,
        help_text=f"How long the job may run: {TIME_EXAMPLES} (the resource's default when empty).",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off", "maxlength": "16"}),
    )

    storages = StorageChoiceField(
        queryset=Storage.objects.none(),
        to_field_name="name",
        required=False,
        widget=StorageCheckboxes,
        help_text=KEPT_HELP,
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
        self.request_names = request_fields(self.fields["resource"].queryset)
        self.fields.update(self.request_names)
        storages = storages_of(user).prefetch_related("mountable_on", "default_for")
        self.fields["storages"].queryset = storages
        if not self.is_bound:
            software = _initial_software(user, self.initial.get("software"))
            self.initial["storages"] = [
                s.name for s in storages if (s.default_for_software(software) if software else s.mounted_by_default)
            ]
        if not self.initial.get("resource"):
            default = default_resource()
            self.initial["resource"] = default.name if default else None
        self.user = user
        self.fields["resource"].widget.describe = lambda resource: {
            **describe_resource(resource),
            "data-quota": quota_help(user, resource),
        }
        self._show_limits()

    task_home = TASK_HOME
    home_kept_note = HOME_KEPT
    home_scratch_note = HOME_SCRATCH

    def home_note(self) -> str:
        """What is said of the home for the storages ticked and the resource chosen, as shown first."""
        resource = self.data.get("resource") or self.initial.get("resource")
        if self.is_bound:
            ticked = self.data.getlist("storages") if hasattr(self.data, "getlist") else self.data.get("storages", [])
        else:
            ticked = self.initial.get("storages") or []
        at_home = [
            storage.name
            for storage in self.fields["storages"].queryset
            if storage.name in ticked and storage.target == TASK_HOME
            and resource in {r.name for r in storage.mountable_on.all()}
        ]  # fmt: skip
        return home_note(at_home[0] if at_home else None)

    @property
    def batch_fields(self) -> list:
        """The batch fields, shown when some enabled resource has a batch scheduler."""
        if not any(is_batch(resource) for resource in self.fields["resource"].queryset):
            return []
        return [self[name] for name in (*BATCH_FIELDS, *self.request_names)]

    @property
    def batch_hidden(self) -> bool:
        """Whether the resource shown first runs tasks without a batch scheduler (the script
        shows the fields again when one that has one is chosen)."""
        resource = self._shown_resource()
        return resource is not None and not is_batch(resource)

    def _shown_resource(self) -> Resource | None:
        name = self.data.get("resource") or self.initial.get("resource")
        return self.fields["resource"].queryset.filter(name=name).first() if name else None

    def _show_limits(self) -> None:
        """Limits beside the fields, and as the inputs' bounds, for the resource shown first."""
        resource = self._shown_resource()
        if resource is None:
            return
        if is_batch(resource):
            for name, help_text in batch_help(resource).items():
                self.fields[name].help_text = help_text
            self._offer_partitions(resource)
        self.fields["resource"].help_text = quota_help(self.user, resource)
        cpus, memory = self.fields["cpus"], self.fields["memory_mb"]
        cpus.help_text = f"Up to {resource.max_cpus:g} on {resource.name}."
        cpus.widget.attrs["max"] = f"{resource.max_cpus:g}"
        limit = format_memory(resource.max_memory_mb)
        memory.help_text = f"{MEMORY_EXAMPLES}; from {MIN_MEMORY_MB}M up to {limit} on {resource.name}."

    def _offer_partitions(self, resource: Resource) -> None:
        """The partitions the resource's last check found, as a select (the default chosen);
        the field stays free text underneath: the services check the value against them."""
        if not partitions_of(resource):
            return
        choices = partition_choices(resource)
        self.fields["partition"].widget = forms.Select(choices=choices)
        if not self.is_bound:
            default = default_partition(resource)
            self.initial.setdefault("partition", default if default in dict(choices) else "")

    def clean_name(self) -> str | None:
        name = self.cleaned_data["name"].strip()
        if name:
            validate_task_name(name)
        return name or None

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
        if memory_mb is not None and memory_mb < MIN_MEMORY_MB:
            self.add_error("memory_mb", f"At least {MIN_MEMORY_MB}M.")
        if self.errors or cpus is None or memory_mb is None:
            return
        try:  # a cluster's partition and its limits, as the resource's last check found them
            asked = batch_request(cleaned, self.request_names) if is_batch(resource) else {}
            check_request(resource, cpus, memory_mb, asked)
        except ValidationError as error:
            self.add_error(_field_of(error), error)

    def task_request(self) -> TaskRequest:
        data = self.cleaned_data
        batch = is_batch(data["resource"])  # the batch fields say nothing to other resources
        return TaskRequest(
            software=data["software"].name,
            software_id=data["software"].pk,
            resource=data["resource"].name,
            name=data["name"],
            cpus=data["cpus"],
            memory_mb=data["memory_mb"],
            environment=data["environment"],
            scheduler_options=batch_request(data, self.request_names) if batch else {},
            storages=[s.name for s in data.get("storages") or () if data["resource"] in s.mountable_on.all()],
        )


def batch_request(data: dict, others=()) -> dict:
    """What the batch fields ask of the scheduler, by its options' names."""
    asked = {"partition": data.get("partition") or "", "time_limit_minutes": data.get("time_limit") or 0}
    asked.update({name: data.get(name) for name in others})
    return {name: value for name, value in asked.items() if value not in (None, "", 0)}


def request_fields(resources) -> dict[str, forms.Field]:
    """A field per option a task may ask of these resources' batch schedulers (their kinds' request
    schemas) besides the partition and the time limit."""
    fields: dict[str, forms.Field] = {}
    for name in sorted({resource.scheduler for resource in resources}):
        kind = kinds.find("scheduler", name)
        if kind is not None and kind.batch:
            for option, field in option_fields(kind.request, kind.label, {}).items():
                if option not in OWN_FIELDS:
                    fields.setdefault(option, field)
    return fields


def _field_of(error: ValidationError) -> str:
    """The field a refusal of rosetta.computing.services.check_request is about."""
    said = " ".join(error.messages)
    if "minutes" in said:
        return "time_limit"
    if "no partition" in said:
        return "partition"
    return "cpus" if "CPUs" in said else "memory_mb"


class TokenForm(forms.Form):
    EXPIRY_CHOICES = [("", "Never (until revoked)"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"),
                      ("365", "In a year")]  # fmt: skip
    name = forms.CharField(max_length=64, initial="cli", widget=forms.TextInput(attrs={"placeholder": "cli"}))
    expires_in_days = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False, label="Expires"
    )
    scopes = forms.MultipleChoiceField(
        choices=[(READ, "read"), (TASKS, "tasks"), (FILES, "files"), (SOFTWARE, "software")],
        initial=list(USER_SCOPES),
        widget=forms.CheckboxSelectMultiple,
        label="May",
        help_text="read: look at everything; tasks: start, stop and open tasks; files: change files; "
        "software: add and build software.",
    )

    def __init__(self, *args, staff: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if staff:  # staff powers through a token only when asked for
            self.fields["scopes"].choices = [*self.fields["scopes"].choices, (ADMIN, "admin (staff powers)")]


class NewUserForm(forms.Form):
    """A new account, as `rosetta users create` makes one: an API token shown once, and here a
    password for the web pages too (made by Rosetta, shown once)."""

    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    password = forms.BooleanField(required=False, initial=True, label="Make a password for the web pages (shown once)")
    staff = forms.BooleanField(required=False, label="Staff (sees and manages every task and user)")


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
    """A computing resource, as staff add and change it. The private key is write-only. Each kind's
    options are fields of their own (named ROLE_KIND_OPTION), made from the kind's schema: the
    fields of the kinds the resource does not use are ignored."""

    private_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
        help_text="The service account's private key (OpenSSH format). Never shown again; leave empty to keep it.",
    )

    class Meta:
        model = Resource
        fields = [
            "name", "description", "transport", "host", "port", "credentials", "username", "work_dir", "scheduler",
            "engine", "max_cpus", "max_memory_mb", "task_outbound", "pull_policy",
        ]  # fmt: skip
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for role in kinds.ROLES:
            for kind in kinds.of(role):
                current = getattr(self.instance, f"{role}_options") if getattr(self.instance, role) == kind.name else {}
                for name, field in option_fields(kind.options, kind.label, current).items():
                    self.fields[f"{role}_{kind.name}_{name}"] = field

    def options(self, role: str) -> dict:
        """The chosen kind's options of ``role`` as filled in (empty ones left to the kind's defaults)."""
        kind = self.cleaned_data.get(role)
        prefix = f"{role}_{kind}_"
        return {
            name.removeprefix(prefix): value
            for name, value in self.cleaned_data.items()
            if name.startswith(prefix) and value not in (None, "")
        }


def option_fields(schema: type[kinds.Options], whose: str, current: dict) -> dict[str, forms.Field]:
    """A form field per option of a kind's schema: numbers and booleans as such, the rest as text."""
    fields = {}
    for name, info in schema.model_fields.items():
        label = f"{name.replace('_', ' ').capitalize()} ({whose})"
        common = dict(required=False, label=label, help_text=info.description or "", initial=current.get(name))
        if info.annotation is bool:
            fields[name] = forms.BooleanField(**common)
        elif info.annotation is int:
            fields[name] = forms.IntegerField(**common)
        elif info.annotation is float:
            fields[name] = forms.FloatField(**common)
        else:
            fields[name] = forms.CharField(max_length=1000, **common)
    return fields


class QuotaForm(forms.Form):
    """A quota as staff set it: for a user or a group, on a resource or all of them."""

    holder = forms.CharField(max_length=150, label="User or group", help_text="A user's name, or group:NAME.")
    resource = forms.ModelChoiceField(
        queryset=Resource.objects.all(), to_field_name="name", required=False, empty_label="All resources together"
    )
    max_tasks = forms.IntegerField(min_value=0, required=False, label="Tasks")
    max_cpus = forms.FloatField(min_value=0, required=False, label="CPUs")
    memory = forms.CharField(required=False, max_length=16, label="Memory", help_text=MEMORY_EXAMPLES)

    def clean_memory(self):
        value = self.cleaned_data["memory"].strip()
        if not value:
            return None
        try:
            return parse_memory_mb(value)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_holder(self):
        text = self.cleaned_data["holder"].strip()
        if text.startswith("group:"):
            group = Group.objects.filter(name=text.removeprefix("group:")).first()
            if group is None:
                raise forms.ValidationError(f"There is no group called {text.removeprefix('group:')!r}.")
            return {"group": group}
        user = get_user_model().objects.filter(username=text).first()
        if user is None:
            raise forms.ValidationError(f"There is no user called {text!r} (a group: group:NAME).")
        return {"user": user}

    def clean(self):
        cleaned = super().clean()
        if all(cleaned.get(name) is None for name in ("max_tasks", "max_cpus", "memory")) and not self.errors:
            raise forms.ValidationError("Give at least one limit: tasks, CPUs or memory.")
        return cleaned
