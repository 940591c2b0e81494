"""What users and operators can do with the catalogue. API, pages and CLI are thin wrappers.

Names are per owner: ``alice/tool:1`` and ``bob/tool:1`` are different entries, and neither
blocks nor reveals the other. A user names an entry ``[OWNER/]NAME[:VERSION]``; ``resolve``
says which one that is (their own first, then the platform's, then one shared with them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from rosetta.catalog.models import (
    BuildState,
    RegistryState,
    Software,
    SoftwareBuild,
    Source,
    Status,
    Visibility,
    validate_version,
)
from rosetta.core.choices import choices_said
from rosetta.core.errors import Conflict, NotFound
from rosetta.core.notify import after_commit

BUILDER = "builder"  # the builder's wake-up socket (rosetta.core.notify)
REFERENCE = re.compile(
    r"^(?:(?P<owner>[\w.@+-]{1,150})/)?(?P<name>[a-z0-9][a-z0-9_-]{0,63})(?::(?P<version>[^:/\s]{1,32}))?$"
)
ACTIVE_BUILDS_PER_USER = 2  # queued or building at once: one user cannot fill the builder's queue
EDITABLE = frozenset(
    {"description", "interface_protocol", "interface_port", "honours_base_port", "own_authorization", "environment",
     "visibility", "group", "status"}
)  # fmt: skip


class Forbidden(Exception):
    """403: the user may see the entry but not do this to it."""


# -- finding entries ------------------------------------------------------------------------------


def catalogue_for(user, *, managing: bool = False):
    """The entries ``user`` may see; with ``managing``, staff see every entry (others' private ones too)."""
    queryset = Software.objects.select_related("owner", "group")
    return queryset if managing and user.is_staff else queryset.visible_to(user)


@dataclass
class Filters:
    text: str = ""  # in the name, description or image
    interface: str = ""  # http | https | ssh | other
    resource: str = ""  # runs there now
    owner: str = ""  # "mine", or a user name
    include_hidden: bool = False
    include_retired: bool = False


def search(user, filters: Filters, *, managing: bool = False) -> list[Software]:
    """The catalogue as ``user`` browses it. Hidden entries show to their owner and to managing
    staff; retired ones only when asked for."""
    queryset = catalogue_for(user, managing=managing)
    if filters.text:
        words = Q()
        for word in filters.text.split()[:8]:
            words &= Q(name__icontains=word) | Q(description__icontains=word) | Q(image__icontains=word)
        queryset = queryset.filter(words)
    if filters.interface:
        queryset = queryset.filter(interface_protocol=filters.interface)
    if filters.owner == "mine":
        queryset = queryset.filter(owner=user)
    elif filters.owner:
        queryset = queryset.filter(owner__username=filters.owner)
    if not filters.include_retired:
        queryset = queryset.exclude(status=Status.RETIRED)
    if not (filters.include_hidden and (managing and user.is_staff)):
        queryset = queryset.exclude(Q(status=Status.HIDDEN) & ~Q(owner=user))
    entries = list(queryset.order_by("name", "owner__username", "-created"))
    if filters.resource:
        from rosetta.computing.models import Resource

        resource = Resource.objects.filter(name=filters.resource, enabled=True).first()
        entries = [entry for entry in entries if resource is not None and runs_on(entry, resource)[0]]
    return entries


def parse_reference(reference: str, version: str | None = None) -> tuple[str | None, str, str | None]:
    """``[OWNER/]NAME[:VERSION]`` as (owner, name, version); ``version`` given apart wins."""
    match = REFERENCE.match(reference.strip())
    if match is None:
        raise NotFound(f"{reference[:80]!r} names no software: write NAME, NAME:VERSION or OWNER/NAME:VERSION.")
    return match["owner"], match["name"], version or match["version"]


def resolve(user, reference: str, version: str | None = None, *, managing: bool = False) -> Software:
    """The entry ``reference`` names for ``user``.

    Among the entries of that name ``user`` may see: their own; else the platform's (set up by
    operators, no owner); else those of the one other owner who shares that name with them (two
    or more: the reference must say OWNER/). Without a version, the newest listed one of that
    owner: a hidden entry is started by its exact NAME:VERSION only. Retired entries are not
    startable; ``managing`` finds them too, hidden ones by name alone (and, for staff, every
    owner's entries) for editing.
    """
    owner, name, version = parse_reference(reference, version)
    candidates = catalogue_for(user, managing=managing).filter(name=name).order_by("-created")
    if owner is not None:
        candidates = candidates.filter(owner__username=owner)
    if not managing:
        retired = candidates.filter(status=Status.RETIRED)
        candidates = candidates.startable()
    entries = list(candidates)
    if version is not None:
        exact = [entry for entry in entries if entry.version == version]
        if not exact:
            raise NotFound(_missing(user, reference, name, version, entries, None if managing else retired))
        entries = exact
    elif not managing:
        listed = [entry for entry in entries if entry.status == Status.LISTED]
        if entries and not listed:
            raise NotFound(f"Every version of {name!r} you may start is hidden: name one exactly, NAME:VERSION.")
        entries = listed
    if not entries:
        raise NotFound(_missing(user, reference, name, version, entries, None if managing else retired))
    mine = [entry for entry in entries if entry.owner_id == user.id]
    platform = [entry for entry in entries if entry.owner_id is None]
    chosen = mine or platform
    if not chosen:
        owners = sorted({entry.owner.username for entry in entries if entry.owner is not None})
        if len(owners) > 1:
            choices = ", ".join(f"{owner}/{name}" for owner in owners)
            raise NotFound(f"Several users share software called {name!r} with you: say which, e.g. {choices}.")
        chosen = entries
    listed = [entry for entry in chosen if entry.status == Status.LISTED]
    return (listed or chosen)[0]


def _missing(user, reference, name, version, entries, retired) -> str:
    if retired is not None and retired.filter(**({"version": version} if version else {})).exists():
        return f"{reference} is retired: it cannot be started any more. Pick another version in the catalogue."
    if version is not None and entries:
        versions = ", ".join(sorted({entry.version for entry in entries}))
        return f"There is no version {version!r} of {name!r} in your catalogue (there are: {versions})."
    startable = catalogue_for(user).startable().values_list("name", flat=True)
    return f"There is no software called {reference!r} in your catalogue{choices_said(startable, 'software')}."


def get_entry(user, software_id: int, *, managing: bool = False) -> Software:
    entry = catalogue_for(user, managing=managing).filter(pk=software_id).first()
    if entry is None:
        raise NotFound(f"There is no software {software_id} in your catalogue.")
    return entry


def runs_on(software: Software, resource) -> tuple[bool, str]:
    """Whether ``resource`` can run ``software`` now, and if not, why not in a few words."""
    from rosetta.registry import is_local

    if software.status == Status.RETIRED:
        return False, "retired"
    if resource.is_local or not is_local(software.image):
        return True, ""
    state = software.registry_state if software.registry_image == software.image else RegistryState.PENDING
    if state == RegistryState.PUSHED:
        return True, ""
    if state == RegistryState.FAILED:
        return False, "could not be copied to the platform's registry"
    return False, "being copied to the platform's registry"


def where_it_runs(software: Software, resources) -> list[dict]:
    """One row per enabled resource: name, ready, note."""
    rows = []
    for resource in resources:
        ready, note = runs_on(software, resource)
        rows.append({"resource": resource.name, "ready": ready, "note": note})
    return rows


# -- adding and changing entries ----------------------------------------------------------------


def check_sharing(user, visibility: str, group: Group | None) -> None:
    """Only staff share with everyone; a group only by its members (or staff)."""
    if visibility == Visibility.EVERYONE and not user.is_staff:
        raise Forbidden("Only staff can make software visible to everyone.")
    if visibility == Visibility.GROUP:
        if group is None:
            raise ValidationError("Name the group that may see it.")
        if not user.is_staff and not user.groups.filter(pk=group.pk).exists():
            raise Forbidden(f"You are not a member of the group {group.name!r}.")


def group_named(name: str | None) -> Group | None:
    if not name:
        return None
    group = Group.objects.filter(name=name).first()
    if group is None:
        raise ValidationError(f"There is no group called {name!r}.")
    return group


def _taken(owner, name: str, version: str) -> str:
    return f"You already have software called {name}:{version}; give another version, or retire that one first."


def add_software(owner, *, group: str | None = None, **fields) -> Software:
    """Register an image reference as ``owner``'s entry (checked: reference, registry, fields)."""
    from rosetta.registry import PUSHER, is_local

    group_object = group_named(group)
    check_sharing(owner, fields.get("visibility", Visibility.PRIVATE), group_object)
    software = Software(owner=owner, group=group_object, source=Source.IMAGE, **fields)
    software.full_clean(validate_constraints=False)  # image reference and environment rules live on the model
    if not is_local(software.image):
        software.registry_state = RegistryState.ELSEWHERE  # remote engines pull it from its own registry
    else:
        from rosetta.catalog.demo import image_digest

        software.image_digest = image_digest(software.image)
    try:
        with transaction.atomic():
            software.save()
    except IntegrityError:
        raise Conflict(_taken(owner, software.name, software.version)) from None
    if is_local(software.image):
        after_commit(PUSHER)  # the pusher copies it to the platform's registry, away from this request
    return software


def may_change(user, software: Software) -> bool:
    return user.is_staff or (software.owner_id is not None and software.owner_id == user.id)


def edit_software(user, software: Software, changes: dict) -> Software:
    """Change what an entry says (never its image: tasks keep what they ran). Owner or staff."""
    if not may_change(user, software):
        raise Forbidden("Only its owner or staff can change this software.")
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValidationError(f"These cannot be changed: {', '.join(sorted(unknown))}.")
    if "group" in changes:
        changes = {**changes, "group": group_named(changes["group"])}
    for field, value in changes.items():
        setattr(software, field, value)
    if "visibility" in changes or "group" in changes:
        if software.visibility == Visibility.GROUP and software.group is None:
            raise ValidationError("Name the group that may see it.")
        if software.visibility != Visibility.GROUP:
            software.group = None
        check_sharing(user, software.visibility, software.group)
    if software.status not in Status.values:
        raise ValidationError(f"Status must be one of {', '.join(Status.values)}.")
    software.full_clean(validate_constraints=False)
    software.save()
    return software


# -- builds -------------------------------------------------------------------------------------


def request_build(owner, *, name: str, version: str, containerfile: str, group: str | None = None, **declared):
    """Queue a build of ``containerfile`` as ``owner``'s entry NAME:VERSION. Everything that
    can be checked before building is checked here, so a build fails only for what the build
    itself finds."""
    from rosetta.catalog.built_images import built_image_name
    from rosetta.catalog.containerfile import check_containerfile
    from rosetta.catalog.models import check_use

    validate_version(version)
    check_containerfile(containerfile, may_use=lambda image: check_use(image, owner))
    group_object = group_named(group)
    check_sharing(owner, declared.get("visibility", Visibility.PRIVATE), group_object)
    image = built_image_name(owner, name, version)
    provisional = Software(owner=owner, name=name, version=version, image=image, group=group_object, **declared)
    provisional.full_clean(validate_constraints=False)
    with transaction.atomic():
        if Software.objects.filter(owner=owner, name=name, version=version).exists():
            raise Conflict(_taken(owner, name, version))
        active = SoftwareBuild.objects.select_for_update().filter(
            owner=owner, state__in=[BuildState.QUEUED, BuildState.BUILDING]
        )
        if any(build.name == name and build.version == version for build in active):
            raise Conflict(f"{name}:{version} is being built already; wait for that build to end.")
        if len(active) >= ACTIVE_BUILDS_PER_USER:
            raise Conflict(f"You have {len(active)} builds waiting or running; wait until one ends.")
        build = SoftwareBuild.objects.create(
            owner=owner,
            name=name,
            version=version,
            containerfile=containerfile,
            image=image,
            declared={**declared, "group": group_object.pk if group_object else None},
        )
        after_commit(BUILDER)
    return build


def builds_of(user):
    queryset = SoftwareBuild.objects.select_related("owner", "software")
    return queryset if user.is_staff else queryset.filter(owner=user)


def get_build(user, build_id: int) -> SoftwareBuild:
    build = builds_of(user).filter(pk=build_id).first()
    if build is None:
        raise NotFound(f"There is no build {build_id}.")
    return build


def queue_position(build: SoftwareBuild) -> int:
    """How many builds go before this queued one."""
    if build.state != BuildState.QUEUED:
        return 0
    return SoftwareBuild.objects.filter(
        state__in=[BuildState.QUEUED, BuildState.BUILDING], created__lt=build.created
    ).count()
