"""Django settings for Rosetta.

Every operator-facing knob is an environment variable prefixed ``ROSETTA_``; defaults
give the embedded single-machine setup (SQLite, local podman) under ``ROSETTA_HOME``.
"""

import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from rosetta.core.paths import home, read_or_create

HOME = home()
HOME.mkdir(parents=True, exist_ok=True)
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
    "rosetta.tasks",
    "rosetta.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tasks"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_NAME = "rosetta_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Task origins are subdomains of the platform's host by default (t1.localhost under localhost),
# so a task's own web app could set cookies for the platform ("cookie tossing"): keep the CSRF
# secret in the session rather than in a cookie such an app could overwrite.
CSRF_USE_SESSIONS = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = HOME / "static"  # for `rosetta manage collectstatic`; WhiteNoise also serves app files directly
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("ROSETTA_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Phase timeouts, in seconds (see rosetta.tasks.phases).
TASK_START_TIMEOUT = float(os.environ.get("ROSETTA_TASK_START_TIMEOUT", "120"))
TASK_STOP_TIMEOUT = float(os.environ.get("ROSETTA_TASK_STOP_TIMEOUT", "30"))
