"""Server-rendered pages. Thin: each view reads or forwards to rosetta.tasks.services; the
live parts (phases, events, logs) are refreshed by static/web/rosetta.js through the API."""

import inspect
import math
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from rosetta.accounts import services as account_services
from rosetta.accounts.models import AccessEpoch, ApiToken, SSHKey
from rosetta.catalog.models import Protocol
from rosetta.computing.errors import AccountRefused
from rosetta.core.errors import Conflict, NotFound
from rosetta.core.keyset import BadCursor, page_of
from rosetta.core.units import format_memory
from rosetta.gateway.access import LOGIN_PATH, access_key, mint_access_token, safe_next_path
from rosetta.gateway.ssh_access import door_info, ssh_access, ssh_config
from rosetta.storage.services import home_mount, what_is_kept
from rosetta.tasks import services
from rosetta.tasks.models import Task
from rosetta.tasks.quotas import OverQuota
from rosetta.tasks.records import record_of
from rosetta.web import throttle
from rosetta.web.forms import SSHKeyForm, TaskForm, TokenForm


def _task_or_404(request, task_id: str) -> Task:
    try:
        return services.get_task(request.user, task_id)
    except NotFound:
        raise Http404("No such task.") from None


@require_GET
def home(request):
    return redirect("tasks")


class LogoutView(auth_views.LogoutView):
    """Django's logout, which then says so on the login page."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are logged out.")
        return response


class LoginView(auth_views.LoginView):
    """Django's login, with failed attempts limited per account and per client address."""

    redirect_authenticated_user = True

    # Django's own dispatch is wrapped in csrf_protect, a second CSRF check with Django's class,
    # which keeps an anonymous visitor's secret in a new session. Ours (rosetta.web.csrf, a
    # middleware) already guards every view; the other two wrappers stay.
    @method_decorator(sensitive_post_parameters())
    @method_decorator(never_cache)
    def dispatch(self, request, *args, **kwargs):
        return inspect.unwrap(auth_views.LoginView.dispatch)(self, request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        self.counters = throttle.counters(request.POST.get("username", ""), throttle.client_address(request))
        retry_after = throttle.blocked_for(self.counters)
        if retry_after:
            minutes = math.ceil(retry_after / 60)
            response = render(request, "web/too_many_logins.html", {"minutes": minutes}, status=429)
            response["Retry-After"] = str(retry_after)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        throttle.forget(self.counters[0])
        return super().form_valid(form)

    def form_invalid(self, form):
        throttle.record_failure(self.counters)
        return super().form_invalid(form)


TASK_FILTERS = [("active", "Active"), ("finished", "Finished"), ("all", "All")]
FINISHED_PER_PAGE = 50  # finished tasks pile up: a page of them at a time, older ones behind a link
ACTIVE_PER_PAGE = 500  # active tasks are few (the resources bound them): all on the first page
PER_PAGE = {"active": ACTIVE_PER_PAGE, "finished": FINISHED_PER_PAGE}


@login_required
@require_GET
def task_list(request):
    """Active tasks first, then finished ones a page at a time, newest first. "All" shows every
    active task on its first page and pages through the finished ones; a page's rows are what the
    API lists for the same cursor, so the page's script can tell when to fetch it again."""
    show = request.GET.get("show", "active")
    if show not in dict(TASK_FILTERS):
        show = "active"
    cursor = request.GET.get("cursor") or None
    listed = services.task_list_of(request.user)
    paged = "active" if show == "active" else "finished"
    try:
        page = page_of(services.filter_by_phase(listed, paged).prefetch_related("mounts"), PER_PAGE[paged], cursor)
    except BadCursor:
        return render(request, "web/task_list_bad_page.html", {"show": show}, status=400)
    sections = [(paged, page, cursor)]
    more_active = None
    if show == "all" and cursor is None:  # every active task comes first, on the first page
        active = page_of(services.filter_by_phase(listed, "active").prefetch_related("mounts"), ACTIVE_PER_PAGE)
        sections.insert(0, ("active", active, None))
        more_active = active.next_cursor
    finished = services.filter_by_phase(services.task_list_of(request.user).filter(owner=request.user), "finished")
    context = {
        "tasks": [task for _, section, _ in sections for task in section.items],
        "show": show,
        "cursor": cursor,
        "older": page.next_cursor,
        "more_active": more_active,
        "api_urls": " ".join(_api_url(phase, at) for phase, _, at in sections),
        "filters": TASK_FILTERS,
        "finished_count": finished.count(),
    }
    return render(request, "web/task_list.html", context)


def _api_url(phase: str, cursor: str | None) -> str:
    """The API request that lists the same tasks as one section of the page (its script compares)."""
    query = {"phase": phase, "limit": PER_PAGE[phase], **({"cursor": cursor} if cursor else {})}
    return f"/api/tasks?{urlencode(query)}"


@login_required
@require_POST
def tasks_delete_finished(request):
    deleted = services.delete_finished(request.user)
    messages.success(request, f"Deleted {deleted} finished task{'s' if deleted != 1 else ''}.")
    return redirect(f"{reverse('tasks')}?show=all")


@login_required
@require_POST
def task_relaunch(request, task_id: str):
    task = _task_or_404(request, task_id)
    try:
        new = services.relaunch(request.user, task)
    except (Conflict, NotFound, ValidationError) as error:
        messages.error(request, " ".join(getattr(error, "messages", [str(error)])))
        return redirect("task", task_id=task.id)
    return redirect("task", task_id=new.id)


LAST_TASK = "last-task-form"  # session key: what the form was last sent with (no environment: it may hold secrets)


@login_required
@require_http_methods(["GET", "POST"])
def task_new(request):
    if request.method == "POST":
        form = TaskForm(request.POST, user=request.user)
        task = _start_task(request, form) if form.is_valid() else None
        if task is not None:
            request.session[LAST_TASK] = {
                "software": task.software_id,
                "resource": task.resource.name,
                "cpus": task.cpus,
                "memory_mb": format_memory(task.memory_mb),
            }
            return redirect("task", task_id=task.id)
    else:
        initial = dict(request.session.get(LAST_TASK) or {})
        if request.GET.get("software"):
            initial["software"] = _chosen_software(request)
        form = TaskForm(user=request.user, initial=initial)
    return render(request, "web/task_new.html", {"form": form}, status=400 if form.errors else 200)


def _chosen_software(request):
    """The entry a catalogue link asked for (?software=ID, or a name the user knows it by)."""
    from rosetta.catalog.services import resolve

    wanted = request.GET.get("software", "")
    if wanted.isdigit():
        return int(wanted)
    try:
        return resolve(request.user, wanted).pk if wanted else None
    except NotFound:
        return None


def _start_task(request, form: TaskForm) -> Task | None:
    """Start the task the form describes, or put the refusal on the form and return None."""
    try:
        return services.start_task(request.user, form.task_request())
    except AccountRefused as error:  # a Conflict, but not of the task's name
        form.add_error(None, str(error))
    except OverQuota as error:
        form.add_error("resource", str(error))
    except Conflict as error:
        form.add_error("name", str(error))
    except NotFound as error:
        form.add_error(None, str(error))
    except ValidationError as error:
        form.add_error(None, error)
    return None


@login_required
@require_GET
def task_detail(request, task_id: str):
    task = _task_or_404(request, task_id)
    mounts = list(task.mounts.select_related("storage"))
    ssh = ssh_access(task)
    host_key = services.ssh_host_key_fingerprint(task) if ssh else None
    context = {"task": task, "events": task.events.all(), "ssh": ssh, "host_key": host_key, "mounts": mounts,
               "home": home_mount(mounts), "kept": what_is_kept(mounts), "record": record_of(task)}  # fmt: skip
    return render(request, "web/task_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def task_stop(request, task_id: str):
    """Stop a task. Staff stopping another user's task confirm it on a page of its own and say
    why; the owner reads the reason in the task's events."""
    task = _task_or_404(request, task_id)
    back = "list" if request.GET.get("back", request.POST.get("back")) == "list" else ""
    reason = request.POST.get("reason", "")
    if request.method == "GET" or (services.stops_anothers_task(request.user, task) and not reason.strip()):
        if task.is_final or task.desired != "running":
            return redirect("task", task_id=task.id)
        asked = request.method == "POST" and "reason" in request.POST  # sent empty: say what is missing
        staff = services.stops_anothers_task(request.user, task)
        context = {"task": task, "back": back, "staff": staff, "asked": asked}
        return render(request, "web/task_stop.html", context, status=400 if asked else 200)
    try:
        services.request_stop(task, by=request.user, reason=reason)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("task", task_id=task.id)
    if back == "list":
        return redirect("tasks")
    return redirect("task", task_id=task.id)


@login_required
@require_POST
def task_delete(request, task_id: str):
    task = _task_or_404(request, task_id)
    was_final = task.is_final
    services.request_delete(task)
    if was_final:
        messages.success(request, f"Task {task.name} was deleted.")
    else:
        messages.info(request, f"Task {task.name} is being stopped, then deleted.")
    return redirect("tasks")


@login_required
@require_GET
def task_open(request, task_id: str):
    """Hand the browser over to the task's origin with a one-time token in a POST body,
    so the token never lands in a URL, history or a Referer header."""
    task = _task_or_404(request, task_id)
    if task.software.interface_protocol == Protocol.SSH:  # no web page: its page shows the ssh command
        return redirect(reverse("task", args=[task.id]) + "#ssh-access")
    if task.is_final:
        response = render(request, "web/task_not_running.html", {"task": task}, status=409)
    else:
        epoch = AccessEpoch.objects.current(request.user.id)  # logging out ends what this token opens
        token = mint_access_token(access_key(settings.SECRET_KEY), request.user.id, task.id, epoch=epoch)
        response = render(
            request,
            "web/task_open.html",
            {
                "task": task,
                "token": token,
                "action": task.interface_url.rstrip("/") + LOGIN_PATH,
                "next": safe_next_path(request.GET.get("next") or "/"),
            },
        )
    response["Cache-Control"] = "no-store"
    # Not no-referrer: browsers would then send "Origin: null" with the form, and the gateway
    # takes the hand-over only from the platform's origin. The Referer says no more than it.
    response["Referrer-Policy"] = "strict-origin"
    return response


def _render_account(
    request,
    form: TokenForm,
    new_secret: str | None = None,
    status: int = 200,
    key_form: SSHKeyForm | None = None,
):
    response = render(
        request,
        "web/account.html",
        {
            "tokens": request.user.api_tokens.order_by("-created"),
            "form": form,
            "new_secret": new_secret,
            "public_url": settings.PUBLIC_URL,
            "ssh_keys": request.user.ssh_keys.all(),
            "key_form": key_form or SSHKeyForm(),
            "door": door_info(),
            "ssh_config": ssh_config(request.user.get_username()),
        },
        status=status,
    )
    # The page may carry a secret shown once: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


NEW_SECRET = "new-token-secret"  # session key: a token's secret, until the page that shows it once


@login_required
@require_GET
def account(request):
    form = TokenForm(staff=request.user.is_staff)
    return _render_account(request, form, new_secret=request.session.pop(NEW_SECRET, None))


@login_required
@require_POST
def token_create(request):
    form = TokenForm(request.POST, staff=request.user.is_staff)
    if not form.is_valid():
        return _render_account(request, form, status=400)
    name, days, scopes = (form.cleaned_data[field] for field in ("name", "expires_in_days", "scopes"))
    try:
        token, secret = account_services.create_token(request.user, name, days, scopes)
    except Conflict as error:
        form.add_error("name", str(error))
        return _render_account(request, form, status=400)
    messages.success(request, f"Token {token.name} was created.")
    # Shown by the page this redirects to, once: a reload of that page mints nothing.
    request.session[NEW_SECRET] = secret
    return redirect("account")


@login_required
@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    account_services.revoke_token(token)
    messages.success(request, f"Token {token.name} ({token.hint}…) was revoked.")
    return redirect("account")


@login_required
@require_POST
def ssh_key_add(request):
    form = SSHKeyForm(request.POST)
    if form.is_valid():
        try:
            key = account_services.add_ssh_key(request.user, form.cleaned_data["public_key"], form.cleaned_data["name"])
        except (ValidationError, Conflict) as error:
            form.add_error("public_key", " ".join(error.messages) if isinstance(error, ValidationError) else str(error))
        else:
            messages.success(
                request, f"SSH key {key.name} ({key.fingerprint}) was added: SSH tasks you start now accept it."
            )
            return redirect("account")
    if "PRIVATE KEY" in form.data.get("public_key", ""):
        form.data = form.data.copy()
        form.data["public_key"] = ""  # never sent back: the page could be cached, or seen over a shoulder
    return _render_account(request, TokenForm(), status=400, key_form=form)


@login_required
@require_POST
def ssh_key_remove(request, key_id: int):
    key = get_object_or_404(SSHKey, pk=key_id, user=request.user)
    account_services.remove_ssh_key(key)
    messages.success(request, f"SSH key {key.name} ({key.fingerprint}) was removed.")
    return redirect("account")
