"""Logging in through the identity provider (OpenID Connect): the button's redirect there, and
its way back (the callback), which signs the user in. Logging out ends the provider's session too
where it offers RP-initiated logout (rosetta.web.views.LogoutView)."""

from __future__ import annotations

import logging

import requests
from authlib.common.urls import add_params_to_uri
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from rosetta.accounts import identity, provider

log = logging.getLogger(__name__)

ID_TOKEN = "oidc_id_token"  # session keys: the ID token, for the provider's logout (id_token_hint)
NEXT = "oidc_next"  # where to go once logged in
BACKEND = "django.contrib.auth.backends.ModelBackend"


def callback_url() -> str:
    return f"{settings.PUBLIC_URL}{reverse('oidc-callback')}"


def _safe_next(request, value: str) -> str:
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts=None, require_https=False):
        return value  # a path on this platform (allowed_hosts=None: no host at all)
    return reverse(settings.LOGIN_REDIRECT_URL)


PASSWORD_LOGIN_OFF = "Password login is turned off on this platform: log in with your institution's account."


def login_context() -> dict:
    """What the login page offers: the identity provider's button, the password form, or both."""
    return {
        "oidc_label": settings.OIDC_LABEL if provider.configured() else "",
        "local_login": settings.LOCAL_LOGIN,
    }


def refused(request, problem: str, status: int):
    """The login page again, saying why logging in did not work."""
    context = {**login_context(), "form": AuthenticationForm(request), "login_problem": problem}
    return render(request, "registration/login.html", context, status=status)


@never_cache
@require_GET
def start(request):
    """To the provider's login, with PKCE (S256) and a nonce (Authlib keeps both in the session)."""
    if not provider.configured():
        return refused(request, "No identity provider is configured on this platform.", 404)
    if request.user.is_authenticated:
        return redirect(_safe_next(request, request.GET.get("next", "")))
    request.session[NEXT] = _safe_next(request, request.GET.get("next", ""))
    try:
        return provider.client().authorize_redirect(request, callback_url())
    except (requests.RequestException, provider.ProviderUnavailable, ValueError) as error:
        log.warning("identity provider unreachable at login: %s", error)
        return refused(request, "The identity provider does not answer; try again in a moment.", 503)


@never_cache
@require_GET
def callback(request):
    """The provider's answer: the code exchanged (with the PKCE verifier), the ID token checked by
    Authlib (signature, issuer, audience, expiry, nonce), the user found or created."""
    if not provider.configured():
        return refused(request, "No identity provider is configured on this platform.", 404)
    try:
        token = provider.client().authorize_access_token(request)
    except provider.OAuthError as error:
        said = error.description or error.error or "it was refused"
        return refused(request, f"The login at the identity provider did not complete: {said}.", 400)
    except (requests.RequestException, ValueError) as error:
        log.warning("identity provider login failed: %s", error)
        return refused(request, "The identity provider did not answer as expected; try again in a moment.", 502)
    except Exception as error:  # joserfc's refusals of the ID token, whatever their class
        if type(error).__module__.startswith(("joserfc", "authlib")):
            return refused(request, f"The identity provider's answer could not be trusted: {error}.", 400)
        raise
    if not token.get("userinfo"):
        return refused(request, "The identity provider sent no ID token.", 400)
    try:
        user = identity.signed_in_user(provider.person(provider.login_claims(token)))
    except identity.Refused as refusal:
        return refused(request, str(refusal), 403)
    except provider.ProviderUnavailable as error:
        log.warning("identity provider login failed: %s", error)
        return refused(request, "The identity provider did not answer as expected; try again in a moment.", 502)
    next_url = request.session.pop(NEXT, "") or reverse(settings.LOGIN_REDIRECT_URL)
    login(request, user, backend=BACKEND)
    request.session[ID_TOKEN] = token.get("id_token", "")
    return redirect(_safe_next(request, next_url))


def provider_logout_url(id_token: str) -> str | None:
    """Where to send a browser that logged out, to end its session at the provider too (RP-initiated
    logout), or None when the provider offers no end_session_endpoint."""
    try:
        endpoint = provider.metadata().get("end_session_endpoint")
    except provider.ProviderUnavailable as error:
        log.warning("no logout at the identity provider: %s", error)
        return None
    if not endpoint:
        return None
    # No state: the way back is the login page, which trusts nothing it is given.
    params = [("id_token_hint", id_token), ("client_id", settings.OIDC_CLIENT_ID),
              ("post_logout_redirect_uri", f"{settings.PUBLIC_URL}{reverse('login')}")]  # fmt: skip
    return add_params_to_uri(endpoint, params)
