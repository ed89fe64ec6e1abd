"""The one fixture module of the btxcode test suite.

The engine is built once per session (``engine``). Real-world notes live outside the repository, in
``shared/realworld/mtsamples``: set ``BTXCODE_SHARED`` to the ``shared`` folder, or leave it unset and
the folder is searched for from the repository root upwards. Tests that need it are skipped when it is
not there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
TRAINING = REPO / "training_data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "issue(n): the test pins behaviour asked for by issue n")


def find_shared() -> Path | None:
    """The ``shared`` folder next to (or above) the repository, or ``$BTXCODE_SHARED``."""
    env = os.environ.get("BTXCODE_SHARED")
    if env:
        p = Path(env).expanduser().resolve()
        return p if (p / "realworld").is_dir() else None
    for parent in (REPO, *REPO.parents):
        candidate = parent / "shared"
        if (candidate / "realworld").is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def engine() -> Any:
    """The engine, loaded once for the whole session (default payer: medicare)."""
    from nlp import load_engine

    return load_engine()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    p = find_shared()
    if p is None:
        pytest.skip("shared/realworld not found (set BTXCODE_SHARED to the shared folder)")
    return p


@pytest.fixture(scope="session")
def mtsamples_dir(shared_dir: Path) -> Path:
    p = shared_dir / "realworld" / "mtsamples"
    if not (p / "reference.json").is_file():
        pytest.skip(f"no MTSamples reference at {p}")
    return p


@pytest.fixture(scope="session")
def training_gold() -> dict[str, dict[str, Any]]:
    data = json.loads((TRAINING / "gold.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


# ---------------------------------------------------------------------------------------------------
# golden cases: parametrised here, so test modules need no imports from conftest


def golden_cases() -> Iterator[Any]:
    """``pytest.param((note_name, text, case))`` for every case of every golden expected file."""
    for exp in sorted((GOLDEN / "expected").glob("*.json")):
        data = json.loads(exp.read_text(encoding="utf-8"))
        note = GOLDEN / "notes" / f"{exp.stem}.txt"
        text = note.read_text(encoding="utf-8")
        for case in data["cases"]:
            case_id = f"{exp.stem}@{case['dos']}" + (f"@{case['payer']}" if case.get("payer") else "")
            yield pytest.param((exp.stem, text, case), id=case_id)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``golden_case`` runs once per case of ``tests/golden/expected/*.json``."""
    if "golden_case" in metafunc.fixturenames:
        metafunc.parametrize("golden_case", list(golden_cases()))
