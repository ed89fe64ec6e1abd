"""Fixtures for the service tests (the engine itself comes from tests/conftest.py): apps on temporary BTXCODE_HOMEs,
CDS client keys generated here, and a live `python -m service serve` on a free loopback port."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings

ISS = "https://ehr.example.org"
OTHER_ISS = "https://rogue.example.org"
BASE = "http://testserver"
REPO = Path(__file__).resolve().parents[2]


def _find_shared() -> Path | None:
    env = os.environ.get("BTXCODE_SHARED")
    if env and Path(env).is_dir():
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "realworld" / "mtsamples").is_dir():
            return parent / "shared"
    return None


def mtsample(prefix: str) -> str:
    root = _find_shared()
    if root is None:
        pytest.skip("shared/realworld/mtsamples not found (set BTXCODE_SHARED)")
    path = next((root / "realworld" / "mtsamples").glob(f"{prefix}_*.txt"))
    return path.read_text(encoding="utf-8")


SEED_NOTE = """PROCEDURE NOTE
Date of service: 01/15/2026
Diagnosis: Cervical dystonia.
Procedure: Chemodenervation with Botox (onabotulinumtoxinA), 100 units from one 100-unit vial, no waste.
EMG guidance was used. Injected: right sternocleidomastoid 30 units, left splenius capitis 40 units,
right trapezius 30 units. Patient tolerated the procedure well.
"""


@pytest.fixture(scope="session")
def cds_keys() -> dict[str, Any]:
    """An EC P-384 and an RSA key for the allow-listed EHR, and a key the service does not know."""
    ec_key = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = ec.generate_private_key(ec.SECP384R1())
    jwks = {"keys": []}
    for kid, key, alg in (("ehr-ec-1", ec_key, "ES384"), ("ehr-rsa-1", rsa_key, "RS384")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        jwks["keys"].append(jwk)
    return {"ec": ec_key, "rsa": rsa_key, "stranger": stranger, "jwks": jwks}


def write_home(home: Path, jwks: dict[str, Any], extra: str = "") -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "cds").mkdir(exist_ok=True)
    (home / "cds" / "ehr-jwks.json").write_text(json.dumps(jwks), encoding="utf-8")
    (home / "config.toml").write_text(
        f'public_base_url = "{BASE}"\nrate_limit_per_minute = 100000\n{extra}\n'
        f'[[cds.issuers]]\niss = "{ISS}"\njwks_file = "cds/ehr-jwks.json"\n', encoding="utf-8")
    return home


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory, cds_keys: dict[str, Any]) -> Path:
    return write_home(tmp_path_factory.mktemp("btxhome"), cds_keys["jwks"])


@pytest.fixture(scope="session")
def app(home: Path, engine: Any) -> Any:
    return create_app(Settings.load(home), engine=engine)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def store(client: TestClient, app: Any) -> Any:
    return app.state.store


@pytest.fixture(scope="session")
def admin_key(store: Any) -> str:
    return store.create_key("test-admin", admin=True)[1]


@pytest.fixture(scope="session")
def user_key(store: Any) -> str:
    return store.create_key("test-user")[1]


@pytest.fixture()
def auth(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


@pytest.fixture()
def make_jwt(cds_keys: dict[str, Any]) -> Any:
    def make(path: str, *, key: str = "ec", alg: str | None = None, kid: str | None = None, iss: str = ISS,
             aud: Any = None, exp_in: int = 300, iat_shift: int = 0, jti: str | None = None,
             drop: tuple[str, ...] = (), headers: dict[str, Any] | None = None) -> str:
        now = int(time.time())
        claims = {"iss": iss, "aud": aud if aud is not None else BASE + path, "exp": now + exp_in,
                  "iat": now + iat_shift, "jti": jti or str(uuid.uuid4()), "tenant": "t1"}
        for k in drop:
            claims.pop(k, None)
        alg = alg or {"ec": "ES384", "rsa": "RS384", "stranger": "ES384"}[key]
        kid = kid or {"ec": "ehr-ec-1", "rsa": "ehr-rsa-1", "stranger": "ehr-ec-1"}[key]
        return jwt.encode(claims, cds_keys[key], algorithm=alg, headers={"kid": kid, "typ": "JWT", **(headers or {})})
    return make


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """`python -m service serve` in a subprocess on 127.0.0.1:<free port>, state in ``home``."""

    def __init__(self, home: Path):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self.admin_key: str | None = None
        self.login_url: str | None = None

    def start(self, timeout: float = 90.0) -> LiveServer:
        import httpx

        env = {**os.environ, "BTXCODE_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        env.pop("BTXCODE_PUBLIC_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if m := re.search(r"(btx_\S+)\s*$", line):
                self.admin_key = m.group(1)
            if m := re.search(r"(http://\S+/login\?token=\S+)", line):
                self.login_url = m.group(1)
            if "serving on" in line:
                break
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("live server did not start:\n" + "".join(self.output))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.output.extend(self.proc.stdout.readlines())
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def seed_note() -> str:
    return SEED_NOTE


@pytest.fixture(scope="session")
def sample() -> Any:
    """``sample("01")``: the text of shared/realworld/mtsamples/01_*.txt (skips when shared/ is absent)."""
    return mtsample


@pytest.fixture(scope="session")
def live_server_cls() -> type[LiveServer]:
    return LiveServer


@pytest.fixture(scope="session")
def settings_for() -> Any:
    """``settings_for(home, extra_toml)``: a home with this suite's CDS issuer, and its Settings."""
    def make(home: Path, jwks: dict[str, Any], extra: str = "") -> Settings:
        return Settings.load(write_home(home, jwks, extra))
    return make
