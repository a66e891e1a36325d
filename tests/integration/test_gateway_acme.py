"""The gateway's ACME path against a real ACME server: Pebble (Let's Encrypt's test server, built by
scripts/dev/build-pebble.sh) stands in for a private ACME CA, configured as a stack would configure
one (gateway.domain, acmeEmail, acmeDirectory, acmeCaRoot). Caddy, started from the container the
program registers, orders a certificate for the domain from it and serves the API with that
certificate; a client that trusts only Pebble's issuing root gets answers with a key and 401
without one.

PEBBLE_VA_ALWAYS_VALID: the domain is a name no resolver here knows, so Pebble accepts the
challenge without dialing it; proving control of a name is the CA's side, not the program's.
"""

import json
import os
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration import gateway_rig, harness
from tests.integration.native_server import NativeOllama, native_ollama  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

DOMAIN = "llm.ollama-gpu.test"
KEY = "acme-gateway-key-" + "5" * 24
ISSUE_SECONDS = 120


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """A running Pebble: its directory URL, the CA file its own HTTPS is signed by, and the URL of
    the root it issues under."""
    product = Path(harness.run_dev_script("build-pebble.sh"))
    workdir = tmp_path_factory.mktemp("pebble")
    acme_port, management_port = harness.free_port(), harness.free_port()
    (workdir / "config.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{acme_port}", "managementListenAddress": f"127.0.0.1:{management_port}",
        "certificate": str(product / "certs/localhost/cert.pem"), "privateKey": str(product / "certs/localhost/key.pem"),
        "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }}))
    env = {**os.environ, "PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_VA_NOSLEEP": "1"}
    with (workdir / "pebble.log").open("w") as log:
        server = subprocess.Popen([product / "bin/pebble", "-config", workdir / "config.json"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    directory = f"https://localhost:{acme_port}/dir"
    ca_file = product / "certs/pebble.minica.pem"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(directory, verify=ssl.create_default_context(cafile=str(ca_file))).raise_for_status()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, (workdir / "pebble.log").read_text()
                time.sleep(0.2)
        yield directory, ca_file, f"https://localhost:{management_port}/roots/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def acme_gateway(pebble, native_ollama: NativeOllama, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    harness.require(harness.docker_answers(), "no Docker daemon answers (scripts/dev/install-prerequisites.sh sets one up)")
    directory, ca_file, roots = pebble
    image = harness.run_dev_script("build-gateway-image.sh")
    port, suffix = harness.free_port(), uuid.uuid4().hex[:8]
    run = gateway_rig.program(urlsplit(native_ollama.url).port, port, suffix, (KEY,), domain=DOMAIN,
                              acmeEmail="ops@ollama-gpu.test", acmeDirectory=directory, acmeCaRoot=ca_file.read_text())
    container, volume = run.by_name("gateway-container").inputs["name"], run.by_name("gateway-data").inputs["name"]
    try:
        assert gateway_rig.start(run, image) == "", "a gateway with a domain reads no internal CA root"
        issuing_root = tmp_path_factory.mktemp("acme") / "issuing-root.pem"
        issuing_root.write_text(httpx.get(roots, verify=ssl.create_default_context(cafile=str(ca_file))).text)
        assert run.outputs["gateway_url"] == f"https://{DOMAIN}:{port}"
        yield port, ssl.create_default_context(cafile=str(issuing_root)), container
    finally:
        harness.remove_containers([container])
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True, check=False)


def _get(port: int, tls: ssl.SSLContext, path: str, key: str | None) -> httpx.Response:
    """GET https://DOMAIN:PORT/path, dialing loopback (no resolver here knows the name)."""
    headers = {"Host": f"{DOMAIN}:{port}", **({"Authorization": f"Bearer {key}"} if key else {})}
    with httpx.Client(verify=tls, timeout=30) as client:
        return client.get(f"https://127.0.0.1:{port}{path}", headers=headers, extensions={"sni_hostname": DOMAIN})


def test_caddy_gets_its_certificate_from_the_acme_directory_and_serves_with_it(acme_gateway) -> None:
    port, tls, container = acme_gateway
    deadline = time.monotonic() + ISSUE_SECONDS
    while True:
        try:
            answer = _get(port, tls, "/api/version", KEY)
            break
        except (httpx.ConnectError, httpx.ReadError) as failure:
            logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False)
            assert time.monotonic() < deadline, f"{failure}\n{logs.stdout}{logs.stderr}"
            time.sleep(1)
    assert answer.status_code == 200 and "version" in answer.json()
    assert _get(port, tls, "/api/version", None).status_code == 401
    assert _get(port, tls, "/api/version", "w" * 40).status_code == 401


def test_the_certificate_is_the_acme_servers_not_caddys_internal_ca(acme_gateway) -> None:
    port, _, _ = acme_gateway
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _get(port, ssl.create_default_context(), "/api/version", KEY)
