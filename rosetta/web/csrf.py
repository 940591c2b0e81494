"""CSRF protection with the secret in the session for signed-in users, in a cookie otherwise.

Why two places: task origins may be subdomains of the platform's host (the ``localhost``
default), so a task's web app can set cookies the platform receives ("cookie tossing"). A
signed-in user's secret therefore stays in their session, which no such app can write (Django's
``CSRF_USE_SESSIONS``). An anonymous visitor has no session, and showing them the login form
must not create one: a database row per visit is free storage for anyone who asks. Their secret
is a host-only cookie (``__Host-`` and Secure over https), and guards the login form alone,
behind Django's Origin check, which already refuses a form posted from a task's origin.
"""

from django.conf import settings
from django.middleware.csrf import (
    CSRF_ALLOWED_CHARS,
    CSRF_SECRET_LENGTH,
    REASON_INCORRECT_LENGTH,
    CsrfViewMiddleware,
    InvalidTokenFormat,
)
from django.utils.cache import patch_vary_headers


def _signed_in(request) -> bool:
    user = getattr(request, "user", None)
    return user is not None and user.is_authenticated


class CsrfMiddleware(CsrfViewMiddleware):
    """Django's CSRF middleware; only where the secret is kept differs (see the module)."""

    def _get_secret(self, request):
        if _signed_in(request):
            return super()._get_secret(request)  # from the session
        secret = request.COOKIES.get(settings.CSRF_COOKIE_NAME)
        if secret is not None and (len(secret) != CSRF_SECRET_LENGTH or set(secret) - set(CSRF_ALLOWED_CHARS)):
            raise InvalidTokenFormat(REASON_INCORRECT_LENGTH)  # the caller answers with a new secret
        return secret

    def _set_csrf_cookie(self, request, response):
        if _signed_in(request):
            super()._set_csrf_cookie(request, response)  # into the session
            return
        response.set_cookie(
            settings.CSRF_COOKIE_NAME,
            request.META["CSRF_COOKIE"],
            max_age=settings.CSRF_COOKIE_AGE,
            path="/",  # no Domain: host-only, as a __Host- cookie must be
            secure=settings.CSRF_COOKIE_SECURE,
            httponly=settings.CSRF_COOKIE_HTTPONLY,
            samesite=settings.CSRF_COOKIE_SAMESITE,
        )
        patch_vary_headers(response, ("Cookie",))

    def process_response(self, request, response):
        response = super().process_response(request, response)
        if _signed_in(request) and settings.CSRF_COOKIE_NAME in request.COOKIES:
            # Signed in now: the anonymous secret has served its purpose.
            response.delete_cookie(settings.CSRF_COOKIE_NAME, samesite=settings.CSRF_COOKIE_SAMESITE)
        return response
