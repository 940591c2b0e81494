"""The file manager's pages: the storages a user may use, and one storage's folders. The page
is a shell; static/web/files.js lists, uploads, previews and organises through the API."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from rosetta.core.errors import NotFound
from rosetta.storage.services import get_storage, storages_of


@login_required
@require_GET
def storage_list(request):
    storages = list(storages_of(request.user))
    if len(storages) == 1:
        return redirect("files", name=storages[0].name)
    return render(request, "web/storages.html", {"storages": storages})


@login_required
@require_GET
def file_manager(request, name: str):
    try:
        storage = get_storage(request.user, name)
    except NotFound:
        raise Http404("No such storage.") from None
    context = {"storage": storage, "storages": storages_of(request.user), "csrf": get_token(request)}
    return render(request, "web/files.html", context)
