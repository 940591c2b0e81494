"""Validation of user input that ends up in container engine commands.

Commands are argv lists, so nothing here is about shell quoting. It is about arguments
that the engine itself interprets: an image reference starting with "-" would be read as
an option, and ``podman run --env NAME`` (no "=") or ``--env 'A*'`` copies variables from
the host's environment.
"""

import re

from django.core.exceptions import ValidationError

# A docker/OCI reference: [registry[:port]/]path[:tag][@digest], lower-case path components.
IMAGE_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[a-z0-9]+:[a-fA-F0-9]{32,})?$"
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_ENV_PREFIXES = ("ROSETTA_",)
RESERVED_ENV_NAMES = {"BASE_PORT"}
MAX_ENV_VARS = 64
MAX_ENV_VALUE = 4096
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def validate_image_reference(value: str) -> None:
    if len(value) > 255 or not IMAGE_REFERENCE.match(value):
        raise ValidationError(
            f"{value[:80]!r} is not a valid image reference (like 'localhost/hello' or 'org/name:tag')."
        )


def validate_env_vars(env: object) -> None:
    if not isinstance(env, dict):
        raise ValidationError("Environment variables must be an object of NAME: value.")
    if len(env) > MAX_ENV_VARS:
        raise ValidationError(f"At most {MAX_ENV_VARS} environment variables are allowed.")
    for name, value in env.items():
        validate_env_name(name)
        if not isinstance(value, str):
            raise ValidationError(f"The value of {name} must be a string.")
        if len(value) > MAX_ENV_VALUE:
            raise ValidationError(f"The value of {name} is longer than {MAX_ENV_VALUE} characters.")
        if any(ord(char) < 32 and char != "\t" for char in value):
            raise ValidationError(f"The value of {name} contains a control character (newline, NUL, ...).")


def validate_env_name(name: object) -> None:
    if not isinstance(name, str) or not ENV_NAME.match(name):
        raise ValidationError(
            f"{str(name)[:80]!r} is not a valid environment variable name: "
            "use letters, digits and '_', not starting with a digit."
        )
    if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES):
        raise ValidationError(f"{name} is set by Rosetta itself and cannot be overridden.")


def validate_task_name(value: str) -> None:
    if not TASK_NAME.match(value):
        raise ValidationError(
            f"{value[:80]!r} is not a valid task name: "
            "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
