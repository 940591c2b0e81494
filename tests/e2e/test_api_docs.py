"""The platform documents its own API, and the docs work without reaching the internet."""

import re

import httpx


def test_openapi_schema_and_offline_docs(platform):
    schema = httpx.get(f"{platform.url}/api/openapi.json").json()
    assert {"/api/tasks", "/api/tasks/{task_id}", "/api/tasks/{task_id}/logs", "/api/software"} <= set(schema["paths"])
    schemes = schema["components"]["securitySchemes"]
    assert schemes["TokenAuth"] == {"type": "http", "scheme": "bearer"} and schemes["SessionAuth"]["in"] == "cookie"

    docs = httpx.get(f"{platform.url}/api/docs")
    assert docs.status_code == 200
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', docs.text)
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    for src in scripts:
        assert httpx.get(platform.url + src).status_code == 200
