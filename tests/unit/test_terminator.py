"""The nginx configuration `rosetta tls-config nginx` prints, from the platform's settings."""

import pytest

from rosetta.gateway.terminator import NotHttps, TerminatorSite, nginx_config

SITE = TerminatorSite(
    public_url="https://rosetta.example.org",
    tasks_domain="example-tasks.org",
    gateway="127.0.0.1:8000",
    certificate="/etc/ssl/rosetta/fullchain.pem",
    key="/etc/ssl/rosetta/key.pem",
)


def test_serves_the_platform_and_every_task_origin_over_https_and_http2():
    config = nginx_config(SITE)
    assert "server_name rosetta.example.org *.example-tasks.org;" in config
    assert "listen 443 ssl http2;" in config and "listen [::]:443 ssl http2;" in config
    assert "ssl_certificate     /etc/ssl/rosetta/fullchain.pem;" in config
    assert "server 127.0.0.1:8000;" in config
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in config


def test_passes_websockets_and_the_host_with_its_port():
    config = nginx_config(SITE)
    assert "proxy_set_header Upgrade $http_upgrade;" in config
    assert "proxy_set_header Connection $rosetta_connection;" in config
    assert "proxy_set_header Host $http_host;" in config


def test_names_the_client_and_limits_each_as_the_gateway_would():
    config = nginx_config(SITE)
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in config  # one address, never the client's own list
    assert "limit_conn_zone $binary_remote_addr zone=rosetta_clients:10m;" in config
    assert "limit_conn rosetta_clients 256;" in config


def test_port_80_redirects_only_in_front_of_the_default_https_port():
    assert "return 301 https://$host$request_uri;" in nginx_config(SITE)
    other_port = TerminatorSite(**{**SITE.__dict__, "public_url": "https://rosetta.example.org:8443"})
    assert "listen 8443 ssl http2;" in nginx_config(other_port)
    assert "return 301" not in nginx_config(other_port)
    chosen = TerminatorSite(**{**SITE.__dict__, "listen": ("127.0.0.1:8443", "[::1]:8443")})
    config = nginx_config(chosen)
    assert "listen 127.0.0.1:8443 ssl http2;" in config and "listen [::1]:8443 ssl http2;" in config
    assert "listen 443" not in config and "return 301" not in config


def test_refuses_a_platform_that_is_not_https():
    with pytest.raises(NotHttps, match="set an https:// URL first"):
        nginx_config(TerminatorSite(**{**SITE.__dict__, "public_url": "http://localhost:8000"}))
