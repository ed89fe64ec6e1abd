"""The API contract: operations and request models pinned in tests/service/openapi.golden.json.
Regenerate deliberately with BTXCODE_UPDATE_GOLDEN=1 when the API changes on purpose."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.issue(4)

GOLDEN = Path(__file__).with_name("openapi.golden.json")


def contract(spec: dict[str, Any]) -> dict[str, Any]:
    ops = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {})
            ref = next((c.get("schema", {}).get("$ref", "") for c in body.values()), "")
            ops[f"{method.upper()} {path}"] = {
                "request": ref.rsplit("/", 1)[-1] or sorted(body),
                "params": sorted(p["name"] for p in op.get("parameters", [])),
                "responses": sorted(op.get("responses", {})),
            }
    schemas = spec.get("components", {}).get("schemas", {})
    models = {name: {"required": sorted(s.get("required", [])), "fields": sorted(s.get("properties", {})),
                     "closed": s.get("additionalProperties") is False}
              for name, s in schemas.items() if name.endswith(("Request", "Note", "Decision", "FinalLine", "Feedback"))}
    return {"operations": ops, "request_models": models}


def test_openapi_matches_golden(client):
    current = contract(client.get("/openapi.json").json())
    if os.environ.get("BTXCODE_UPDATE_GOLDEN") or not GOLDEN.exists():
        GOLDEN.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert current == json.loads(GOLDEN.read_text(encoding="utf-8"))
