"""`rosetta tls-config`: the configuration of a TLS terminator in front of the gateway."""

from __future__ import annotations

import click

from rosetta.core.django_setup import setup_django


@click.group("tls-config")
def tls_config():
    """Print a TLS terminator's configuration for this platform's names (see docs/deployment.md)."""


@tls_config.command("nginx")
@click.option("--certificate", required=True, help="Certificate chain for the platform's host and *.TASKS_DOMAIN.")
@click.option("--key", required=True, help="Its private key (readable by nginx's master process only).")
@click.option("--gateway", default="127.0.0.1:8000", show_default=True, help="Where the gateway listens, HOST:PORT.")
@click.option(
    "--listen",
    multiple=True,
    metavar="ADDRESS:PORT",
    help="Where nginx listens (repeatable; default: every address, the public URL's port, plus :80 redirecting).",
)
def nginx(certificate, key, gateway, listen):
    """nginx (Debian's 1.22): https and HTTP/2 for the platform and every task origin, WebSockets passed through.

    Made from ROSETTA_PUBLIC_URL (https://...) and ROSETTA_TASKS_DOMAIN; install the output as
    /etc/nginx/conf.d/rosetta.conf."""
    setup_django()
    from django.conf import settings

    from rosetta.gateway.terminator import NotHttps, TerminatorSite, nginx_config

    site = TerminatorSite(
        public_url=settings.PUBLIC_URL,
        tasks_domain=settings.TASKS_DOMAIN,
        gateway=gateway,
        certificate=certificate,
        key=key,
        listen=tuple(listen),
    )
    try:
        click.echo(nginx_config(site), nl=False)
    except NotHttps as error:
        raise click.ClickException(str(error)) from None
