"""Users' own SSH public keys: what the SSH front door (rosetta.gateway.ssh_door) accepts, and
what their SSH tasks' servers are told to accept.

A key is parsed with asyncssh and kept in one canonical form, ``<algorithm> <base64>`` (its
comment apart), identified by its SHA-256 fingerprint as ``ssh-keygen -l`` prints it. Only
algorithms OpenSSH itself still offers by default are taken, RSA from 2048 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncssh
from django.core.exceptions import ValidationError

MIN_RSA_BITS = 2048
MAX_KEY_TEXT = 16 * 1024  # an RSA key of 16384 bits is under 3 KiB as one OpenSSH line
MAX_NAME = 100
ALGORITHMS = {
    "ssh-ed25519": "ED25519",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
    "sk-ssh-ed25519@openssh.com": "ED25519-SK",  # hardware keys (FIDO)
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
    "ssh-rsa": "RSA",
}
# The servers of SSH tasks get their owner's keys in this variable, separated by ";" (an
# environment file holds one line per variable). See images/README.md.
AUTHORIZED_KEYS_ENV = "ROSETTA_TASK_AUTHORIZED_KEYS"


@dataclass(frozen=True)
class ParsedKey:
    public_key: str  # "<algorithm> <base64>", no comment
    algorithm: str
    kind: str  # ED25519, ECDSA, RSA, ... as ssh-keygen names them
    bits: int
    fingerprint: str  # SHA256:...
    comment: str


def parse_public_key(text: str) -> ParsedKey:
    """The key in ``text`` (one OpenSSH public key line, as in ``~/.ssh/id_ed25519.pub``), or a
    ValidationError saying in plain words what is wrong with it."""
    text = (text or "").strip()
    if not text:
        raise ValidationError("Paste a public key, such as the content of ~/.ssh/id_ed25519.pub.")
    if len(text) > MAX_KEY_TEXT:
        raise ValidationError("This is too long to be an SSH public key.")
    if "PRIVATE KEY" in text:
        raise ValidationError(
            "This is a private key: never share it. Give the public key instead (the file ending in .pub)."
        )
    if len(text.splitlines()) > 1 and not text.startswith("---- BEGIN SSH2 PUBLIC KEY"):
        raise ValidationError("Give one public key at a time (one line).")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise ValidationError(
            "This is not an SSH public key. It should look like 'ssh-ed25519 AAAAC3Nza... you@laptop'."
        ) from None
    algorithm = key.get_algorithm()
    if algorithm not in ALGORITHMS:
        raise ValidationError(
            f"{algorithm} keys are not accepted; use an Ed25519 key (ssh-keygen -t ed25519), ECDSA, or RSA "
            f"of at least {MIN_RSA_BITS} bits."
        )
    bits = _bits(key)
    if algorithm == "ssh-rsa" and bits < MIN_RSA_BITS:
        raise ValidationError(
            f"This RSA key has {bits} bits; at least {MIN_RSA_BITS} are needed. "
            "Better, make an Ed25519 key: ssh-keygen -t ed25519"
        )
    public = key.export_public_key("openssh").decode().split()
    return ParsedKey(
        public_key=f"{public[0]} {public[1]}",
        algorithm=algorithm,
        kind=ALGORITHMS[algorithm],
        bits=bits,
        fingerprint=key.get_fingerprint("sha256"),
        comment=(key.get_comment() or "")[:MAX_NAME],
    )


def _bits(key: asyncssh.SSHKey) -> int:
    pyca = getattr(key, "pyca_key", None)
    size = getattr(pyca, "key_size", None)
    if isinstance(size, int):
        return size
    return 256  # ed25519 (and the FIDO kinds): fixed size


def authorized_keys_value(public_keys: list[str]) -> str:
    """The value of AUTHORIZED_KEYS_ENV for these canonical keys (no comments, so no ';' inside)."""
    return ";".join(public_keys)
