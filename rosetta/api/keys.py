"""The API of users' SSH public keys (for the SSH front door) and of the door itself. Not to
be confused with /me/ssh-key, the key the platform makes for each user on SSH resources."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from rosetta.accounts import services
from rosetta.accounts.models import SSHKey
from rosetta.accounts.ssh_keys import MAX_KEY_TEXT, MAX_NAME
from rosetta.api.schemas import InSchema, Message
from rosetta.core.errors import NotFound
from rosetta.gateway.ssh_access import door_info, ssh_config

router = Router(tags=["account"])


class SSHKeyIn(InSchema):
    public_key: str = Field(
        ..., max_length=MAX_KEY_TEXT, description="One OpenSSH public key line, e.g. the content of id_ed25519.pub."
    )
    name: str = Field("", max_length=MAX_NAME, description="A name to tell it apart (default: the key's comment).")


class SSHKeyOut(Schema):
    id: int
    name: str
    kind: str = Field(..., description="ED25519, ECDSA, RSA, ... as ssh-keygen names them.")
    bits: int
    fingerprint: str = Field(..., description="SHA256:..., as `ssh-keygen -l -f KEY.pub` prints it.")
    public_key: str = Field(..., description="'<algorithm> <base64>', without the comment.")
    created: datetime
    last_used: datetime | None = Field(..., description="The last login at the SSH front door (to the minute).")


class SSHDoorOut(Schema):
    host: str = Field(..., description="Where to connect.")
    port: int
    host_key: str = Field(..., description="The door's public host key.")
    fingerprint: str = Field(..., description="What ssh shows on the first connection, to compare.")
    known_hosts: str = Field(..., description="A ~/.ssh/known_hosts line that pins the door's host key.")
    ssh_config: str = Field(..., description="A ~/.ssh/config snippet: then `ssh TASK-ID.rosetta` reaches a task.")


@router.get("/me/keys", response=list[SSHKeyOut])
def list_keys(request: HttpRequest):
    """Your SSH public keys: the SSH front door lets them in, to your own SSH tasks."""
    return SSHKey.objects.filter(user=request.auth)


@router.post("/me/keys", response={201: SSHKeyOut, 400: Message, 409: Message})
def add_key(request: HttpRequest, payload: SSHKeyIn):
    """Register a public key (Ed25519, ECDSA, or RSA of 2048 bits or more). SSH tasks accept the
    keys registered when they start; the door checks at every connection."""
    return 201, services.add_ssh_key(request.auth, payload.public_key, payload.name)


@router.delete("/me/keys/{key_id}", response={204: None, 404: Message})
def remove_key(request: HttpRequest, key_id: int):
    """Remove a key: the SSH front door refuses it from the next connection on, and ends the
    connections open with it within seconds."""
    key = SSHKey.objects.filter(user=request.auth, pk=key_id).first()
    if key is None:
        raise NotFound(f"You have no SSH key {key_id}.")
    services.remove_ssh_key(key)
    return 204, None


@router.get("/ssh", response={200: SSHDoorOut, 404: Message})
def ssh_door(request: HttpRequest):
    """The SSH front door: where it is and the host key it proves itself with."""
    info = door_info()
    if info is None:
        return 404, {"detail": "This platform runs no SSH front door."}
    return 200, {**info.__dict__, "ssh_config": ssh_config(request.auth.get_username())}
