"""The API keeps to its own schema: schemathesis (property-based, driven by /api/openapi.json)
against a running platform finds no server error, no undocumented status, no response the
schema does not describe, in every phase (stateful included). Bounded to stay quick."""

import re
import subprocess
import sys
from pathlib import Path

import httpx

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def run_schemathesis(platform, token: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{platform.url}/api/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "8",
            "--workers",
            "1",
            "--request-timeout",
            "15",
            "--seed",
            "20261126",
            "--no-color",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=platform.home,
    )


def test_the_api_keeps_to_its_schema(platform):
    token = platform.create_user("schemathesis")
    result = run_schemathesis(platform, token)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-2000:]


def test_api_errors_are_json_and_the_docs_lead_back(platform):
    token = platform.create_user("jsonly")
    with platform.api(token) as api:
        for method, path, status in (
            ("GET", "/api/no/such/endpoint", 404),
            ("PUT", "/api/tasks", 405),
            ("GET", "/api/tasks/nothere", 404),
            ("GET", "/api/tasks?phase=sleeping", 422),
        ):
            response = api.request(method, path)
            assert response.status_code == status, (path, response.text)
            assert response.headers["content-type"].startswith("application/json") and response.json()["detail"]
    # A session without its CSRF header: refused, in JSON too.
    refused = httpx.post(f"{platform.url}/api/tasks", json={}, cookies={"sessionid": "x"})
    assert refused.status_code in (401, 403) and refused.json()["detail"]
    docs = httpx.get(f"{platform.url}/api/docs").text
    assert 'href="/tasks/">Back to your tasks' in docs and "Bearer" in docs
    schema = httpx.get(f"{platform.url}/api/openapi.json").json()
    bodies = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary") or operation.get("description"), f"{method} {path} is not described"
            # A JSON body takes the fields it documents and no other (a misspelt one is a 422).
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for ref in re.findall(r"'\$ref': '#/components/schemas/(\w+)'", str(body)):
                assert schema["components"]["schemas"][ref]["additionalProperties"] is False, (method, path)
                bodies.add(ref)
    assert {"TaskIn", "StopIn", "TokenIn", "SoftwareIn", "ResourceIn", "StorageIn"} <= bodies
