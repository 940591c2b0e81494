"""The configuration of a TLS terminator in front of the gateway (``rosetta tls-config nginx``).

Over https the gateway itself speaks plain HTTP/1.1 on loopback; a terminator ends TLS for the
platform's host and every task origin (``*.<tasks domain>``, one wildcard certificate), speaks
HTTP/2 to browsers, and passes WebSocket upgrades through. Everything else (access, cookies,
HSTS on the platform's pages, the limits) stays the gateway's, so the terminator's
configuration is short and made from the platform's own settings: what an operator installs
is what the tests run. The SSH front door is not behind it (SSH is not HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

HSTS = "max-age=31536000"  # one year, as the platform's pages say it (settings.SECURE_HSTS_SECONDS)
PER_CLIENT_CONNECTIONS = 256  # the gateway's own limit per client address (GatewayConfig.max_connections_per_client)


class NotHttps(ValueError):
    """The public URL is not https: there is no TLS to end in front of the gateway."""


@dataclass(frozen=True)
class TerminatorSite:
    public_url: str  # https://rosetta.example.org
    tasks_domain: str  # example-tasks.org: task origins are *.example-tasks.org
    gateway: str  # where the gateway listens, HOST:PORT (loopback)
    certificate: str  # path of the certificate chain: the platform's host and *.<tasks domain>
    key: str  # path of its private key
    listen: tuple[str, ...] = ()  # ADDRESS:PORT to listen on; default: every address, the public URL's port

    @property
    def public_host(self) -> str:
        return urlsplit(self.public_url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.public_url).port or 443

    def listen_on(self) -> list[str]:
        return list(self.listen) or [str(self.port), f"[::]:{self.port}"]


def nginx_config(site: TerminatorSite) -> str:
    """An nginx ``http``-level configuration (for ``/etc/nginx/conf.d/``) for Debian's nginx 1.22."""
    if urlsplit(site.public_url).scheme != "https":
        raise NotHttps(f"ROSETTA_PUBLIC_URL is {site.public_url}: set an https:// URL first (TLS ends in front).")
    names = f"{site.public_host} *.{site.tasks_domain.rstrip('.')}"
    listens = "\n".join(f"    listen {address} ssl http2;" for address in site.listen_on())
    redirect = _nginx_redirect(names) if site.port == 443 and not site.listen else ""
    return f"""\
# TLS in front of Rosetta's gateway, made by `rosetta tls-config nginx` from the platform's settings:
# the platform at {site.public_url}, tasks at https://*.{site.tasks_domain}.
# Install as /etc/nginx/conf.d/rosetta.conf, then `nginx -t && systemctl reload nginx`. The gateway
# keeps everything else (access, cookies, the platform's HSTS) and believes the client address
# given here once ROSETTA_TRUSTED_PROXIES names the address nginx connects from (127.0.0.1,::1).

upstream rosetta_gateway {{
    server {site.gateway};
    keepalive 64;  # connections to the gateway are reused between requests
}}

# The gateway leaves per-client connection limits to its trusted terminator: as many at once per
# client address as the gateway allows one (with HTTP/2, each request in flight counts).
limit_conn_zone $binary_remote_addr zone=rosetta_clients:10m;

# WebSockets (Jupyter kernels, noVNC) are passed through as upgrades; other requests keep the
# connection to the gateway open for the next one.
map $http_upgrade $rosetta_connection {{
    default upgrade;
    ""      "";
}}

server {{
{listens}
    server_name {names};

    ssl_certificate     {site.certificate};
    ssl_certificate_key {site.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:rosetta_tls:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets off;

    # Every answer, the tasks' own included, tells browsers to come back over https only.
    proxy_hide_header Strict-Transport-Security;
    add_header Strict-Transport-Security "{HSTS}" always;

    limit_conn rosetta_clients {PER_CLIENT_CONNECTIONS};
    limit_conn_status 429;

    # The gateway limits bodies itself (64 MiB to the platform, uploads to storages streamed)
    # and closes idle connections: nothing is buffered or cut short here.
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_read_timeout 1h;
    proxy_send_timeout 1h;

    location / {{
        proxy_pass http://rosetta_gateway;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;  # the task origin the browser asked for, port included
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $rosetta_connection;
        proxy_set_header X-Forwarded-For $remote_addr;  # replaces any the client sent
    }}
}}
{redirect}"""


def _nginx_redirect(names: str) -> str:
    return f"""
# Plain http only sends browsers to https.
server {{
    listen 80;
    listen [::]:80;
    server_name {names};
    return 301 https://$host$request_uri;
}}
"""
