"""`scripts/plan --model NAME` against the real registry stand-in of the end-to-end rig (Debian's
docker-registry, blob downloads redirected to a second address, tests/e2e/rig.py), with models
pushed there by the real Ollama server as `ollama push` does.

The planner reads each model's manifest and only its GGUF header, and plans the same geometry as
from the local file; a truncated blob in the registry's storage, a manifest without a model layer
and a missing model each end in one message. (A registry that ignores Range requests is covered by
tests/unit/test_planner_registry.py: the stand-in's blob server honours them.)
"""

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ollama
import pytest

from ollama_gpu.planner.gguf_geometry import geometry_from_gguf
from ollama_gpu.planner.registry import read_remote_model
from tests.e2e import rig
from tests.integration import harness
from tests.integration.arch_models import write_gemma3, write_llama
from tests.integration.native_server import BASE_MODEL, NativeOllama, native_ollama  # noqa: F401 (the fixture)
from tests.integration.tiny_model import write_tiny_gguf

REPO = Path(__file__).resolve().parents[2]
NAME = f"{harness.RESOURCE_PREFIX}-planner-registry"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Served:
    registry: rig.Registry
    files: dict[str, Path]  # model name in the registry -> the GGUF it was made from


@pytest.fixture(scope="module")
def served(native_ollama: NativeOllama, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # noqa: F811
    workdir = tmp_path_factory.mktemp("planner-registry")
    files = {"tiny": write_tiny_gguf(workdir / "tiny.gguf"), "gemma3tiny": write_gemma3(workdir / "gemma3.gguf"),
             "cut": write_llama(workdir / "llama.gguf")}
    client = ollama.Client(host=native_ollama.url)
    with rig.network(f"{NAME}-net") as net, rig.registry(net, NAME) as registry:
        rig.push_model(native_ollama.binary, native_ollama.url, BASE_MODEL, registry, "tiny")
        for name in ("gemma3tiny", "cut"):
            local = f"planner-{name}:push"
            client.create(model=local, files={files[name].name: client.create_blob(files[name])})
            rig.push_model(native_ollama.binary, native_ollama.url, local, registry, name)
            client.delete(local)
        yield Served(registry, files)


def plan(registry: rig.Registry, model: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_GPU_CACHE": str(cache)}
    command = [REPO / "scripts/plan", "--model", model, "--registry", registry.url, "--gpu", "none",
               "--num-ctx", "4096", "--num-predict", "512", "--json"]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def manifest(registry: rig.Registry, model: str) -> dict:
    request = urllib.request.Request(f"{registry.url}/v2/library/{model}/manifests/latest", headers={"Accept": MANIFEST_TYPE})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_scripts_plan_reads_the_models_header_from_the_registry(served: Served, tmp_path):
    for model, path in (("tiny", served.files["tiny"]), ("gemma3tiny", served.files["gemma3tiny"])):
        result = plan(served.registry, model, tmp_path / "cache")
        assert result.returncode == 0, result.stderr
        printed = json.loads(result.stdout)
        local = geometry_from_gguf(path)
        assert (printed["model"], printed["layers"]["total"], printed["engine"]) == (model, local.block_count, "ollama")
        remote = read_remote_model(model, registry=served.registry.url, cache_dir=tmp_path / "cache")
        assert remote.geometry.block_weight_bytes == local.block_weight_bytes
        assert (remote.size, remote.geometry.output_bytes) == (path.stat().st_size, local.output_bytes)
    # Headers are cached per digest: a second plan reads the manifest only.
    assert len(list((tmp_path / "cache" / "gguf-headers").iterdir())) == 2


def test_a_manifest_without_a_model_layer(served: Served, tmp_path):
    # The tiny model's blobs, re-tagged under a manifest whose only layer is not a model.
    source = manifest(served.registry, "tiny")
    base = f"http://{served.registry.push_address}/v2/library/adapter-only"
    model_layer = next(layer for layer in source["layers"] if layer["mediaType"] == "application/vnd.ollama.image.model")
    for digest in (model_layer["digest"], source["config"]["digest"]):
        mount = urllib.request.Request(f"{base}/blobs/uploads/?mount={digest}&from=library/tiny", method="POST")
        with urllib.request.urlopen(mount, timeout=10) as response:
            assert response.status == 201
    adapter_only = {**source, "layers": [{**model_layer, "mediaType": "application/vnd.ollama.image.adapter"}]}
    put = urllib.request.Request(f"{base}/manifests/latest", data=json.dumps(adapter_only).encode(), method="PUT",
                                 headers={"Content-Type": MANIFEST_TYPE})
    with urllib.request.urlopen(put, timeout=10):
        pass
    result = plan(served.registry, "adapter-only", tmp_path / "cache")
    assert result.returncode == 2
    assert "has no application/vnd.ollama.image.model layer (layers: application/vnd.ollama.image.adapter)" in result.stderr


def test_a_missing_model(served: Served, tmp_path):
    result = plan(served.registry, "no-such-model", tmp_path / "cache")
    assert result.returncode == 2 and "is not in registry" in result.stderr


def test_a_truncated_blob_in_the_registrys_storage(served: Served, tmp_path):
    layer = next(layer for layer in manifest(served.registry, "cut")["layers"]
                 if layer["mediaType"] == "application/vnd.ollama.image.model")
    hexdigest = layer["digest"].removeprefix("sha256:")
    stored = f"/var/lib/docker-registry/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    rig.docker("exec", f"{NAME}-blobs", "busybox", "truncate", "-s", str(layer["size"] // 2), stored)
    result = plan(served.registry, "cut", tmp_path / "cache")
    assert result.returncode == 2
    assert f"blob {layer['digest']}" in result.stderr and "truncated upload" in result.stderr
