"""schemathesis against the API's own OpenAPI description (/openapi.json): whatever it
generates for every documented operation, the hub never answers 5xx.

Bounded for the default run (HUB_SCHEMATHESIS_EXAMPLES per operation, 8 by default: a few
hundred cases in all).  A longer run (README, Reliability)::

    HUB_SCHEMATHESIS_EXAMPLES=100 HUB_TEST_DB_URL=sqlite \\
        .venv/bin/python -m pytest -q -p no:cacheprovider tests/ops/test_openapi_fuzz.py

schemathesis's own pytest integration (``from_fixture``) does not run under this pytest, so
the operations are walked here, each with its hypothesis strategy.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

EXAMPLES = int(os.environ.get("HUB_SCHEMATHESIS_EXAMPLES", "8"))


def test_no_server_errors(app: FastAPI, admin_headers: dict[str, str]) -> None:
    # As the office's administrator (the schema is an office path): the cases reach the
    # handlers instead of stopping at 401/403.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=admin_headers)
    failures: list[str] = []
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # the FHIR interactions and operations are described

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same cases every run: a failure here is reproducible
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            try:
                response = case.call(headers=admin_headers)
            except Exception as exc:  # the ASGI client re-raises what the app did not handle
                failures.append(f"{case.method} {case.formatted_path}: raised {exc!r}")
                return
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query or ''} -> "
                    f"{response.status_code}: {response.text[:300]}"
                )

        run()
    assert not failures, "\n".join(failures[:20])
    print(f"{len(operations)} operations, {calls} cases")
    assert calls >= len(operations)
