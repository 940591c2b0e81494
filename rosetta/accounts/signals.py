"""Ends task access when a user logs out or is deactivated.

Task origins carry their own access cookie, which logging out of the platform does not
remove: the user's access epoch is bumped instead, and the gateway (woken once the change has
committed) refuses cookies of an earlier epoch. Deactivated users also leave the gateway's
table of active users, so their cookies and API tokens stop working at once.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal

from rosetta.accounts.models import AccessEpoch
from rosetta.core import notify

# Sent by rosetta.accounts.services.deactivate inside its transaction, with ``user``. Each receiver
# answers how many tasks it is stopping for that (rosetta.tasks stops the user's active tasks);
# an error in a receiver undoes the deactivation.
user_deactivated = Signal()

# Fields of the user that the gateway's route table depends on.
_GATEWAY_FIELDS = frozenset(("is_active", "is_staff"))


def end_task_access(user_id: int) -> None:
    with transaction.atomic():
        AccessEpoch.objects.bump(user_id)
        notify.after_commit(notify.GATEWAY, notify.ACCESS)


def _on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        end_task_access(user.pk)


def _on_user_saved(sender, instance, created, update_fields, **kwargs) -> None:
    if update_fields is not None and not _GATEWAY_FIELDS & set(update_fields):
        return  # e.g. last_login on every login: nothing the gateway knows changed
    if not instance.is_active:
        end_task_access(instance.pk)  # reactivating the user must not revive the old cookies
    elif not created:
        notify.after_commit(notify.GATEWAY, notify.ACCESS)  # staff rights may have changed


def _on_user_deleted(sender, instance, **kwargs) -> None:
    notify.after_commit(notify.GATEWAY, notify.ACCESS)


def connect() -> None:
    user_model = get_user_model()
    user_logged_out.connect(_on_logout, dispatch_uid="rosetta.accounts.end_task_access")
    post_save.connect(_on_user_saved, sender=user_model, dispatch_uid="rosetta.accounts.user_saved")
    post_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid="rosetta.accounts.user_deleted")
