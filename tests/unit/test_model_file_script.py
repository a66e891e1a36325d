"""scripts/host/model-file.sh, rendered as the program renders it, against a stand-in registry that
answers as Ollama's registry API does (manifest for a tag, blobs by digest, ranges, a bearer-token
challenge) and a stand-in `docker` whose volume is a temporary directory. It must leave the volume
as Ollama's pull would (manifest and every blob under models/), verify each blob's sha256, resume a
partial download, and ask the registry nothing when the model is already complete."""

import hashlib
import http.server
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from ollama_gpu.model_source import ModelSource
from ollama_gpu.settings import ModelSettings
from ollama_gpu.shell import declared_parameters, script_command

SCRIPT = "host/model-file.sh"
MODEL_TYPE = "application/vnd.ollama.image.model"
GGUF = b"GGUF" + os.urandom(300_000)
TEMPLATE = b"{{ .Prompt }}"
CONFIG = json.dumps({"model_format": "gguf"}).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(blobs: dict[str, bytes]) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": _digest(CONFIG), "size": len(CONFIG)},
        "layers": [
            {"mediaType": MODEL_TYPE, "digest": _digest(blobs["model"]), "size": len(GGUF)},
            {"mediaType": "application/vnd.ollama.image.template", "digest": _digest(TEMPLATE), "size": len(TEMPLATE)},
        ],
    }).encode()


@dataclass
class FakeRegistry:
    url: str = ""
    # What the blob route serves for the model's digest (a wrong body tests the sha256 check).
    model_body: bytes = GGUF
    token: Optional[str] = None
    requests: list[tuple[str, Optional[str]]] = field(default_factory=list)  # (path, Range header)

    @property
    def blobs(self) -> dict[str, bytes]:
        return {_digest(GGUF): self.model_body, _digest(TEMPLATE): TEMPLATE, _digest(CONFIG): CONFIG}


@pytest.fixture
def registry() -> Callable[..., FakeRegistry]:
    servers = []

    def start(**options) -> FakeRegistry:
        fake = FakeRegistry(**options)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append((self.path, self.headers.get("Range")))
                if self.path.startswith("/token?"):
                    return self._send(200, json.dumps({"token": fake.token}).encode())
                if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                    challenge = f'Bearer realm="{fake.url}/token",service="registry",scope="repository:library/tiny:pull"'
                    return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
                if self.path == "/v2/library/tiny/manifests/base":
                    if "manifest.v2+json" not in self.headers.get("Accept", ""):
                        return self._send(400, b"wrong Accept")
                    return self._send(200, _manifest({"model": GGUF}))
                prefix = "/v2/library/tiny/blobs/"
                if self.path.startswith(prefix) and self.path[len(prefix):] in fake.blobs:
                    body = fake.blobs[self.path[len(prefix):]]
                    first = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                    if first:
                        return self._send(206, body[first:], {"Content-Range": f"bytes {first}-{len(body) - 1}/{len(body)}"})
                    return self._send(200, body)
                return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')

            def _send(self, status: int, body: bytes, headers: Optional[dict] = None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        fake.url = f"http://127.0.0.1:{server.server_address[1]}"
        return fake

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def volume(tmp_path) -> tuple[Path, dict]:
    """A directory standing for the volume, and a `docker` on PATH that reports it as its mountpoint."""
    root = tmp_path / "volume"
    root.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\n[ "$1 $2" = "volume inspect" ] && [ "$5" = models ] || exit 2\necho {root}\n')
    docker.chmod(0o755)
    return root, {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _source(registry_url: str, tag: str = "base") -> ModelSource:
    model = ModelSettings(base=f"tiny:{tag}", alias="tiny:e2e", parameters={"numCtx": 2048, "numPredict": 256},
                          registry=registry_url)
    return ModelSource.for_model(model)


def _fetch(registry_url: str, env: dict, tag: str = "base") -> subprocess.CompletedProcess:
    source = _source(registry_url, tag)
    params = {
        "VOLUME": "models", "REGISTRY_URL": source.registry_url, "REPOSITORY": source.name.repository,
        "TAG": source.name.tag, "MANIFEST_PATH": source.manifest_path, "LINK_PATH": source.link_path,
        "TIMEOUT_SECONDS": 60, "PROGRESS_SECONDS": 1,
    }
    command = script_command(SCRIPT, {name: params[name] for name in declared_parameters(SCRIPT)}, "model-file-fetch")
    return subprocess.run(["/bin/sh", "-c", command.line], input=command.stdin, capture_output=True, text=True,
                          timeout=90, env={**os.environ, **env})


def _blob(root: Path, data: bytes) -> Path:
    return root / "models" / "blobs" / _digest(data).replace(":", "-")


def test_the_model_lands_where_ollama_keeps_it_and_the_link_resolves_to_the_gguf(registry, volume):
    root, env = volume
    fake = registry()
    result = _fetch(fake.url, env)
    assert result.returncode == 0, result.stderr
    source = _source(fake.url)
    for data in (GGUF, TEMPLATE, CONFIG):
        assert _blob(root, data).read_bytes() == data
    assert (root / "models" / source.manifest_path).read_bytes() == _manifest({"model": GGUF})
    assert (root / "models" / source.link_path).read_bytes() == GGUF
    # Relative, so it resolves under the container's read-only mount as well.
    assert not os.readlink(root / "models" / source.link_path).startswith("/")
    assert result.stdout.splitlines()[-1] == f"ollama-gpu: model file: blobs/{_digest(GGUF).replace(':', '-')}"
    assert "changed: fetched" in result.stdout


def test_a_complete_model_is_not_fetched_again_and_the_registry_is_not_asked(registry, volume):
    root, env = volume
    fake = registry()
    assert _fetch(fake.url, env).returncode == 0
    asked = len(fake.requests)
    again = _fetch(fake.url, env)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout and len(fake.requests) == asked


def test_a_partial_download_resumes_where_it_stopped(registry, volume):
    root, env = volume
    fake = registry()
    partial = root / "models" / "llama-server" / "downloads" / _digest(GGUF).replace(":", "-")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(GGUF[:100_000])
    result = _fetch(fake.url, env)
    assert result.returncode == 0, result.stderr
    assert "resuming at" in result.stdout
    assert (f"/v2/library/tiny/blobs/{_digest(GGUF)}", "bytes=100000-") in fake.requests
    assert _blob(root, GGUF).read_bytes() == GGUF and not partial.exists()


def test_a_blob_that_does_not_match_its_digest_is_deleted_and_the_model_is_not_complete(registry, volume):
    root, env = volume
    fake = registry(model_body=b"GGUF" + b"\0" * 300_000)
    result = _fetch(fake.url, env)
    assert result.returncode != 0
    assert f"{_digest(GGUF)} of library/tiny:base" in result.stderr and "deleted it" in result.stderr
    assert not _blob(root, GGUF).exists()
    assert not (root / "models" / _source(fake.url).manifest_path).exists()
    assert not list((root / "models" / "llama-server" / "downloads").iterdir())


def test_a_registry_that_asks_for_a_token_gets_an_anonymous_one(registry, volume):
    root, env = volume
    fake = registry(token="anonymous-pull-token")
    result = _fetch(fake.url, env)
    assert result.returncode == 0, result.stderr
    assert _blob(root, GGUF).read_bytes() == GGUF
    assert any(path.startswith("/token?") and "scope=repository%3alibrary%2ftiny%3apull" in path.lower() for path, _ in fake.requests)


def test_an_unknown_model_fails_with_the_registrys_answer(registry, volume):
    _, env = volume
    result = _fetch(registry().url, env, tag="nope")
    assert result.returncode != 0
    assert "HTTP 404" in result.stderr and "manifest unknown" in result.stderr
