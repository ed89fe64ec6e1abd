"""Property-based run of every operation in the OpenAPI schema: no input may cause a 5xx.

Drives schemathesis' strategies with Hypothesis directly (its pytest plugin does not support this
pytest yet), against the real app and engine."""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")
from hypothesis import HealthCheck, given, settings  # noqa: E402

pytestmark = pytest.mark.issue(4)

EXAMPLES = 40


def test_no_operation_returns_a_server_error(app, client, admin_key, make_jwt):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    errors: list[str] = []
    seen: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    def make_runner(op: Any) -> Any:
        label = f"{op.method.upper()} {op.path}"

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            path = case.formatted_path
            token = make_jwt(path) if path.startswith("/cds-services") else admin_key
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            seen[label] = seen.get(label, 0) + 1
            if response.status_code >= 500:
                errors.append(f"{label} -> {response.status_code}: {response.text[:300]}")

        return run

    for op in operations:
        make_runner(op)()
    assert not errors, "\n".join(errors[:20])
    assert all(seen.get(f"{op.method.upper()} {op.path}") for op in operations)
