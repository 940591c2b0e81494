"""Django settings for Rosetta.

Every operator-facing knob is an environment variable prefixed ``ROSETTA_``; defaults
give the embedded single-machine setup (SQLite, local podman) under ``ROSETTA_HOME``.
"""

import ipaddress
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from rosetta.core import logs
from rosetta.core.paths import private_dir, private_home, read_or_create

HOME = private_home()
# Every process counts its metrics into files here (rosetta.core.metrics); set before any of them
# is made, since prometheus-client reads it then. This home's, whatever a parent process said.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(private_dir(HOME / "run" / "metrics"))
BASE_DIR = Path(__file__).resolve().parent


def _secret_key() -> str:
    """The instance's key, created once; the gateway signs access with it too."""
    return os.environ.get("ROSETTA_SECRET_KEY") or read_or_create(
        HOME / "secret_key", lambda: secrets.token_urlsafe(50)
    )


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("ROSETTA_DEBUG", "") == "1"

# The public address of the platform (the gateway's front door). Task origins are
# ``<task-id>.<ROSETTA_TASKS_DOMAIN>`` on the same scheme and port.
PUBLIC_URL = os.environ.get("ROSETTA_PUBLIC_URL", "http://localhost:8000").rstrip("/")


def _default_tasks_domain(public_url: str) -> str:
    """The public host, unless it is an IP address (which cannot have subdomains)."""
    host = urlsplit(public_url).hostname or "localhost"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return "localhost"


TASKS_DOMAIN = os.environ.get("ROSETTA_TASKS_DOMAIN") or _default_tasks_domain(PUBLIC_URL)
# Task origins same-site with the platform are refused at start (rosetta.core.sites) unless accepted here.
ALLOW_SAME_SITE_TASKS = os.environ.get("ROSETTA_ALLOW_SAME_SITE_TASKS", "") == "1"
HTTPS = urlsplit(PUBLIC_URL).scheme == "https"

# Registries images may come from ("host[:port]", as the image reference names it). Users name
# images, and the engine pulls them as root: without this list a user could make it connect to
# any address this machine reaches. "localhost" is the images built on the resource itself.
_registries = os.environ.get("ROSETTA_ALLOWED_REGISTRIES", "localhost")
ALLOWED_REGISTRIES = [name.strip().lower() for name in _registries.split(",") if name.strip()]

# The platform's own registry (rosetta.registry): where it listens ("HOST:PORT"; port 0 = a free
# port chosen at start; "off" = no registry) and the address resources pull from (default: the
# listen address). Both are plain "host:port" as image references name them (no IPv6 literals).
REGISTRY_LISTEN = os.environ.get("ROSETTA_REGISTRY_LISTEN", "127.0.0.1:0").strip()
REGISTRY_ADDRESS = os.environ.get("ROSETTA_REGISTRY_ADDRESS", "").strip().lower()

# The SSH front door (rosetta.gateway.ssh_door), a jump host to users' SSH tasks: the port
# `rosetta run` serves it on, on the same addresses as the gateway ("off": no door), and the
# "HOST:PORT" users are told to connect to (default: the public URL's host, that port).
SSH_PORT = os.environ.get("ROSETTA_SSH_PORT", "2222").strip().lower()
SSH_ADDRESS = os.environ.get("ROSETTA_SSH_ADDRESS", "").strip()
# The door's private host key: a file the site gives every machine's door (default: one made in
# ROSETTA_HOME, which is per machine).
SSH_HOST_KEY = os.environ.get("ROSETTA_SSH_HOST_KEY", "").strip()

# This machine's name among the installation's machines sharing one database (PostgreSQL): a
# `local` resource belongs to one machine (Resource.node), and only that machine's controller
# drives it. Every machine needs a name of its own; the default is its host name.
NODE = os.environ.get("ROSETTA_NODE", "").strip() or socket.gethostname().split(".")[0] or "localhost"

# TLS terminators in front of the gateway ("ADDRESS,..." as they connect to it, e.g. 127.0.0.1,::1):
# the gateway believes the client address their X-Forwarded-For names, and leaves per-client
# connection limits to them (docs/deployment.md). Anyone else's X-Forwarded-For is replaced.
TRUSTED_PROXIES = [
    address.strip() for address in os.environ.get("ROSETTA_TRUSTED_PROXIES", "").split(",") if address.strip()
]

# Who may read /metrics without a staff token: networks, e.g. "10.0.0.5/32,::1/128" (rosetta.web.metrics).
METRICS_ALLOW = [
    ipaddress.ip_network(network.strip(), strict=False)
    for network in os.environ.get("ROSETTA_METRICS_ALLOW", "").split(",")
    if network.strip()
]

ALLOWED_HOSTS = ["*"]  # the gateway decides which hosts reach the platform
USE_X_FORWARDED_HOST = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = [PUBLIC_URL]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # serves the API docs' Swagger UI from local files (no CDN on closed networks)
    "rosetta.accounts",
    "rosetta.api",
    "rosetta.catalog",
    "rosetta.computing",
    "rosetta.gateway",  # one-time access tokens redeemed (rosetta.gateway.used_tokens)
    "rosetta.storage",
    "rosetta.tasks",
    "rosetta.web",
]

MIDDLEWARE = [
    "rosetta.api.middleware.json_errors_under_api",  # outermost: sees every answer under /api/
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "rosetta.web.csrf.CsrfMiddleware",  # after authentication: where the secret lives depends on the user
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "rosetta.core.disk.DiskFullMiddleware",  # a page's write that met a full disk: 507, said plainly
]

ROOT_URLCONF = "rosetta.urls"
ASGI_APPLICATION = "rosetta.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "rosetta.web.context.phases",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("ROSETTA_DATABASE_URL", f"sqlite:///{HOME / 'rosetta.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, controller and gateway are separate processes sharing one file: WAL lets
    # readers go on while one writes, IMMEDIATE avoids lock upgrades that fail outright.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
]
# Failed web logins allowed per account and per client address within one window (rosetta.web.throttle).
LOGIN_FAILURES_PER_ACCOUNT = 10
LOGIN_FAILURES_PER_ADDRESS = 30
LOGIN_FAILURE_WINDOW = 15 * 60  # seconds
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tasks"
LOGOUT_REDIRECT_URL = "login"

# Over https, cookies are Secure and named __Host-: browsers then accept them only from the
# platform's own host, never set through a Domain= attribute by another host of the site.
_COOKIE_PREFIX = "__Host-" if HTTPS else ""
SESSION_COOKIE_NAME = f"{_COOKIE_PREFIX}rosetta_session"
SESSION_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Task origins are subdomains of the platform's host by default (t1.localhost under localhost),
# so a task's own web app could set cookies for the platform ("cookie tossing"): a signed-in
# user's CSRF secret lives in their session, which such an app cannot write. Anonymous visitors
# have no session (a login form must not create a database row per visit): theirs is in this
# cookie, guarding the login form only, beside Django's Origin check (rosetta.web.csrf).
CSRF_USE_SESSIONS = True
CSRF_COOKIE_NAME = f"{_COOKIE_PREFIX}rosetta_csrf"
CSRF_COOKIE_SECURE = HTTPS
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Strict"
CSRF_COOKIE_AGE = None  # until the browser closes
SECURE_HSTS_SECONDS = 365 * 24 * 3600 if HTTPS else 0

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = private_dir(HOME / "static")  # for `rosetta manage collectstatic`; WhiteNoise also serves app files
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": logs.PLAIN}, "json": {"()": logs.JsonFormatter}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json" if logs.json_wanted() else "plain"}},
    "root": {"handlers": ["console"], "level": logs.level()},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Phase timeouts, in seconds (see rosetta.tasks.phases).
TASK_START_TIMEOUT = float(os.environ.get("ROSETTA_TASK_START_TIMEOUT", "120"))
TASK_STOP_TIMEOUT = float(os.environ.get("ROSETTA_TASK_STOP_TIMEOUT", "30"))

# Tasks that mount storages on this machine run in their owner's own range of 65,536 host ids, one
# of the STORAGE_ID_COUNT ids from STORAGE_ID_BASE (rosetta.storage.ids); their storages' files
# belong to those ids. scripts/setup.sh reserves the region in /etc/subuid and /etc/subgid; by
# default it lies above the subordinate ids of ordinary accounts and up to podman's automatic
# ranges (from 2^31 - 1): 17,509 users.
STORAGE_ID_BASE = int(os.environ.get("ROSETTA_STORAGE_ID_BASE", "1000000000"))
STORAGE_ID_COUNT = int(os.environ.get("ROSETTA_STORAGE_ID_COUNT", str(17509 * 65536)))

# Users' builds run in a user namespace of host ids BUILD_ID_BASE to BUILD_ID_BASE + 65,535 (one
# build at a time; scripts/setup.sh reserves the range in /etc/subuid and /etc/subgid), so that
# the images they use can be kept ready for them, read-only, in those ids (rosetta.builds).
BUILD_ID_BASE = int(os.environ.get("ROSETTA_BUILD_ID_BASE", "400000000"))

# The built-in environments `rosetta setup` puts in the demo catalogue (rosetta.catalog.demo).
DEMO_SOFTWARE = [
    name.strip() for name in os.environ.get("ROSETTA_DEMO_SOFTWARE", "hello,jupyterlab,desktop,ssh").split(",")
]
