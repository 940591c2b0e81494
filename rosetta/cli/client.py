"""A small client for Rosetta's REST API, used by the `rosetta` command line."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import httpx

CONFIG_PATH = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "rosetta" / "cli.json"
DEFAULT_URL = "http://localhost:8000"
RETRY_DELAYS = (0.5, 1, 2, 4, 8)  # seconds between attempts of a request that is safe to repeat
UNAVAILABLE = {502, 503, 504}  # the platform is restarting: worth another try


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def saved_login() -> dict:
    try:
        return json.loads(CONFIG_PATH.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def save_login(url: str, token: str) -> Path:
    CONFIG_PATH.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(CONFIG_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    return CONFIG_PATH


def has_client_login() -> bool:
    return bool(os.environ.get("ROSETTA_TOKEN") or saved_login().get("token"))


class Client:
    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        saved = saved_login()
        self.url = (url or os.environ.get("ROSETTA_URL") or saved.get("url") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("ROSETTA_TOKEN") or saved.get("token")
        if not token:
            raise ApiError(
                401, "No API token: set ROSETTA_TOKEN or run `rosetta login` (tokens are on your Account page)."
            )
        self.http = httpx.Client(base_url=self.url + "/api", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def request(self, method: str, path: str, *, retry: bool = False, **kwargs):
        """One API call. With ``retry``, a POST carries an Idempotency-Key and is sent again
        while the platform cannot be reached: it takes effect once however often it is sent."""
        if retry and method == "POST":
            kwargs["headers"] = {**kwargs.get("headers", {}), "Idempotency-Key": str(uuid.uuid4())}
        for delay in (*RETRY_DELAYS, None) if retry else (None,):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                if delay is None:
                    raise ApiError(0, f"Cannot reach Rosetta at {self.url}: {error}") from error
            else:
                if response.status_code not in UNAVAILABLE or delay is None:
                    break
            time.sleep(delay)
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return response.json() if response.content else None

    def __repr__(self) -> str:
        return f"Client({self.url})"  # never the token

    def stream(self, path: str, /, **params):
        try:
            with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(30, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, _detail(response))
                yield from response.iter_bytes()
        except httpx.HTTPError as error:
            raise ApiError(0, f"Cannot reach Rosetta at {self.url}: {error}") from error


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
