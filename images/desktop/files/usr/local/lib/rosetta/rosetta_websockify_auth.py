"""websockify auth plugin: the per-task secret of the Rosetta platform.

Used as `websockify --auth-plugin rosetta_websockify_auth.BearerSecret --web-auth ...` with
this directory on PYTHONPATH. Every request -- web files and the VNC WebSocket alike -- must
carry `Authorization: Bearer <ROSETTA_TASK_SECRET>` (the gateway adds it to each request it
forwards); anything else gets 401 and never reaches VNC.
"""

import hmac
import os

from websockify.auth_plugins import AuthenticationError


class BearerSecret:
    def __init__(self, src=None):
        secret = os.environ.get("ROSETTA_TASK_SECRET", "")
        if not secret:
            raise ValueError("ROSETTA_TASK_SECRET is empty")
        self.expected = secret.encode()

    def authenticate(self, headers, target_host, target_port):
        scheme, _, credentials = (headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self.expected):
            raise AuthenticationError(
                log_msg="missing or wrong task secret",
                response_code=401,
                response_headers={"WWW-Authenticate": 'Bearer realm="rosetta-task"'},
                response_msg="Unauthorized",
            )
