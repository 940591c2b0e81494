"""`/metrics`: operators' numbers in Prometheus' text format, on the platform's public port.

Only for operators: a staff API token with the admin scope as `Authorization: Bearer`, or a
client address in ``ROSETTA_METRICS_ALLOW`` (networks, e.g. a Prometheus server's). The counts
every process made (rosetta.core.metrics) are added up here, with what the database says now.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from rosetta.accounts.models import ApiToken
from rosetta.accounts.tokens import ADMIN
from rosetta.catalog.models import Software, SoftwareBuild
from rosetta.tasks.models import Task

BEARER = "Bearer "


class DatabaseCollector:
    """What the database says at the moment of the scrape."""

    def collect(self):
        tasks = GaugeMetricFamily("rosetta_tasks", "Tasks by phase and resource.", labels=["phase", "resource"])
        for row in Task.objects.values("phase", "resource__name").annotate(count=Count("id")).order_by():
            tasks.add_metric([row["phase"], row["resource__name"]], row["count"])
        yield tasks
        builds = GaugeMetricFamily("rosetta_builds", "Users' image builds by state (queued: the queue).",
                                   labels=["state"])  # fmt: skip
        for row in SoftwareBuild.objects.values("state").annotate(count=Count("id")).order_by():
            builds.add_metric([row["state"]], row["count"])
        yield builds
        pushes = GaugeMetricFamily("rosetta_registry_images", "Software images by where they stand in the "
                                   "platform's registry.", labels=["state"])  # fmt: skip
        for row in Software.objects.values("registry_state").annotate(count=Count("id")).order_by():
            pushes.add_metric([row["registry_state"]], row["count"])
        yield pushes


def _allowed(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    if header.startswith(BEARER):
        token = ApiToken.objects.token_for(header.removeprefix(BEARER).strip())
        return token is not None and token.user.is_staff and ADMIN in token.scope_set
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOW)


def _forget_dead_processes(directory: Path) -> None:
    """Gauges of processes that ended (a replaced gateway) count no more; their counters stay."""
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            multiprocess.mark_process_dead(int(pid), str(directory))


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse(
            "Operators only: a staff API token with the admin scope (Authorization: Bearer), or an address "
            "in ROSETTA_METRICS_ALLOW.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    _forget_dead_processes(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(directory))
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
