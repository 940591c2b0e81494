from django.db import IntegrityError, transaction

from rosetta.catalog.models import RegistryState, Software
from rosetta.core.errors import Conflict
from rosetta.core.notify import after_commit


def add_software(owner, **fields) -> Software:
    from rosetta.registry import PUSHER, is_local

    software = Software(owner=owner, **fields)
    software.full_clean()  # image reference and environment rules live on the model
    if not is_local(software.image):
        software.registry_state = RegistryState.ELSEWHERE  # remote engines pull it from its own registry
    try:
        with transaction.atomic():
            software.save()
    except IntegrityError:
        raise Conflict(f"There is already software called {fields['name']!r}.") from None
    if is_local(software.image):
        after_commit(PUSHER)  # the pusher copies it to the platform's registry, away from this request
    return software
