"""`rosetta setup` on a machine where the test bed is up: the platform logs in through the test
bed's OpenID Connect provider (testbed.json's ``oidc`` entry), as it registers the test bed's
computing resources. The settings go into ROSETTA_HOME/login.json (private), which
rosetta.settings reads where the environment does not set them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.conf import settings


def settings_from(oidc: dict) -> dict[str, str]:
    """The ROSETTA_OIDC_* settings for the test bed's provider, as testbed.json describes it."""
    return {
        "ROSETTA_OIDC_ISSUER": oidc["issuer"],
        "ROSETTA_OIDC_CLIENT_ID": oidc["client"]["client_id"],
        "ROSETTA_OIDC_CLIENT_SECRET": oidc["client"]["client_secret"],
        "ROSETTA_OIDC_USERNAME_CLAIM": oidc.get("username_claim", "preferred_username"),
        "ROSETTA_OIDC_GROUPS_CLAIM": oidc.get("groups_claim", "groups"),
        "ROSETTA_OIDC_STAFF_GROUP": oidc.get("staff_group", ""),
        "ROSETTA_OIDC_API_AUDIENCE": oidc.get("api_audience", ""),
    }


def configure(testbed: dict) -> list[str]:
    """Write the login settings for the test bed's provider, if it has one; what was done, in words."""
    oidc = testbed.get("oidc")
    if not oidc:
        return []
    write(Path(settings.LOGIN_FILE), settings_from(oidc))
    overridden = sorted(name for name in settings_from(oidc) if os.environ.get(name))
    note = f" (the environment's {', '.join(overridden)} win)" if overridden else ""
    return [f"Institutional login: the test bed's OpenID Connect provider at {oidc['issuer']}{note}."]


def write(path: Path, values: dict[str, str]) -> None:
    """Replace the file whole (readers never see half of it), private to the platform's account."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(values, file, indent=2)
    os.replace(temporary, path)
