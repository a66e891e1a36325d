"""The registry client against a registry served in-process: the docker distribution v2 paths
Ollama uses (manifests, blobs, a redirect of blobs to another host), with the failure modes a real
one shows: no range support, a truncated blob, a manifest without a model layer, no answer."""

import hashlib
import http.server
import json
import re
import threading

import pytest

from ollama_gpu.planner.registry import ModelName, RegistryError, RegistryUnreachable, read_remote_model
from tests.unit.test_planner_gguf import LLAMA_META, write_gguf

MODEL_TYPE = "application/vnd.ollama.image.model"


class Registry:
    """manifests[(repository, tag)] = manifest; blobs[digest] = bytes."""

    def __init__(self, ranges=True, redirect_to=None, token=None, refuse_credentials=False):
        self.manifests, self.blobs, self.ranges, self.redirect_to = {}, {}, ranges, redirect_to
        self.token, self.refuse_credentials = token, refuse_credentials
        self.blob_bytes_sent = 0

    def add_model(self, repository, tag, blob, size=None, media_type=MODEL_TYPE, extra_layers=()):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        self.blobs[digest] = blob
        self.manifests[(repository, tag)] = {
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest, "size": 2},
            "layers": [{"mediaType": media_type, "digest": digest, "size": len(blob) if size is None else size}, *extra_layers],
        }
        return digest


def serve(registry):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/token?"):
                return self.reply(200, json.dumps({"token": registry.token}).encode())
            if registry.refuse_credentials and self.headers.get("Authorization"):
                return self.reply(400, b"only one auth mechanism allowed")
            if registry.token and self.path.startswith("/v2/") and self.headers.get("Authorization") != f"Bearer {registry.token}":
                realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
                self.send_response(401)
                self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="registry",scope="repository:x:pull"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            manifest = re.match(r"^/v2/(.+)/manifests/([^/]+)$", self.path)
            blob = re.match(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$", self.path)
            if manifest and (manifest[1], manifest[2]) in registry.manifests:
                return self.reply(200, json.dumps(registry.manifests[(manifest[1], manifest[2])]).encode())
            if blob and blob[2] in registry.blobs:
                if registry.redirect_to and not self.headers.get("X-Redirected"):
                    self.send_response(307)
                    self.send_header("Location", f"{registry.redirect_to}/blobs/{blob[2]}")
                    self.end_headers()
                    return None
                return self.send_blob(registry.blobs[blob[2]])
            storage = re.match(r"^/blobs/(sha256:[0-9a-f]{64})$", self.path)
            if storage and storage[1] in registry.blobs:
                return self.send_blob(registry.blobs[storage[1]])
            return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

        def send_blob(self, data):
            wanted = re.match(r"^bytes=(\d+)-(\d+)$", self.headers.get("Range", ""))
            if registry.ranges and wanted:
                start, end = int(wanted[1]), min(int(wanted[2]), len(data) - 1)
                if start >= len(data):
                    return self.reply(416, b"")
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                chunk = data[start:end + 1]
            else:
                self.send_response(200)
                chunk = data
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            try:
                self.wfile.write(chunk)
                registry.blob_bytes_sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stops reading once it has the header
            return None

        def reply(self, status, body):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def registry(tmp_path):
    started = []

    def start(**options):
        reg = Registry(**options)
        server = serve(reg)
        started.append(server)
        return reg, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in started:
        server.shutdown()


@pytest.fixture
def model_blob(tmp_path):
    """A real GGUF: 3 llama blocks with 4 MiB of weights each behind a ~1 KB header."""
    tensors = [("token_embd.weight", "F32", (64, 100))]
    tensors += [(f"blk.{b}.ffn_up.weight", "F32", (1024, 1024)) for b in range(3)]
    return write_gguf(tmp_path / "m.gguf", "llama", LLAMA_META, tensors).read_bytes()


def read(name, base, tmp_path, **options):
    return read_remote_model(name, registry=base, cache_dir=tmp_path / "cache", timeout=5, **options)


def test_names_follow_ollama_defaults():
    assert str(ModelName.parse("qwen3:30b")) == "registry.ollama.ai/library/qwen3:30b"
    assert str(ModelName.parse("127.0.0.1:5000/library/tiny")) == "127.0.0.1:5000/library/tiny:latest"
    for bad in ("", "a/b/c/d", "bad name", "-x", "a//b"):
        with pytest.raises(RegistryError, match="model name"):
            ModelName.parse(bad)


def test_reads_only_the_header_with_range_requests(registry, model_blob, tmp_path):
    reg, base = registry()
    digest = reg.add_model("library/tiny", "q", model_blob)
    remote = read("tiny:q", base, tmp_path)
    assert (remote.digest, remote.size, remote.geometry.block_count) == (digest, len(model_blob), 3)
    assert remote.geometry.block_weight_bytes == (4 * 1024 * 1024,) * 3
    assert reg.blob_bytes_sent < len(model_blob)  # the 12 MB of weights never crossed the wire
    assert remote.notes == ()


def test_blobs_redirected_to_another_host_keep_the_range(registry, model_blob, tmp_path):
    storage, storage_base = registry()
    storage.add_model("library/tiny", "q", model_blob)
    reg, base = registry(redirect_to=storage_base)
    reg.add_model("library/tiny", "q", model_blob)
    assert read("tiny:q", base, tmp_path).geometry.block_count == 3
    assert storage.blob_bytes_sent < len(model_blob)


def test_a_token_registry_is_read_anonymously_and_the_token_stays_home(registry, model_blob, tmp_path):
    # The docker registry token flow (401 + WWW-Authenticate: Bearer realm=...); blob storage on
    # another host refuses requests that carry the registry's token, as S3 presigned URLs do.
    storage, storage_base = registry(refuse_credentials=True)
    storage.add_model("library/tiny", "q", model_blob)
    reg, base = registry(redirect_to=storage_base, token="anonymous-pull")
    reg.add_model("library/tiny", "q", model_blob)
    assert read("tiny:q", base, tmp_path).geometry.block_count == 3


def test_a_registry_without_range_support_is_read_as_a_stream_and_said(registry, model_blob, tmp_path):
    reg, base = registry(ranges=False)
    reg.add_model("library/tiny", "q", model_blob)
    remote = read("tiny:q", base, tmp_path)
    assert remote.geometry.block_count == 3
    assert any("ignores HTTP range requests" in note for note in remote.notes)


def test_the_header_is_cached_per_digest(registry, model_blob, tmp_path):
    reg, base = registry()
    reg.add_model("library/tiny", "q", model_blob)
    read("tiny:q", base, tmp_path)
    sent = reg.blob_bytes_sent
    assert read("tiny:q", base, tmp_path).geometry.block_count == 3
    assert reg.blob_bytes_sent == sent  # second plan: manifest only
    assert list((tmp_path / "cache" / "gguf-headers").iterdir())


def test_an_unreachable_registry_uses_the_cached_manifest_or_says_so(registry, model_blob, tmp_path):
    reg, base = registry()
    reg.add_model("library/tiny", "q", model_blob)
    read("tiny:q", base, tmp_path)
    gone = "http://127.0.0.1:1"
    with pytest.raises(RegistryUnreachable, match="unreachable"):
        read("tiny:q", gone, tmp_path)  # the cache is per registry: this one never answered
    cache = tmp_path / "cache" / "manifests"
    moved = cache / "127.0.0.1_1"
    next(cache.iterdir()).rename(moved)
    remote = read("tiny:q", gone, tmp_path)
    assert remote.geometry.block_count == 3
    assert any("planned from the manifest cached" in note for note in remote.notes)


def test_a_truncated_blob_is_named(registry, model_blob, tmp_path):
    reg, base = registry()
    reg.add_model("library/cut", "q", model_blob[:200], size=len(model_blob))
    with pytest.raises(RegistryError, match="truncated upload"):
        read("cut:q", base, tmp_path)
    reg.add_model("library/short", "q", model_blob[: len(model_blob) // 2], size=len(model_blob))
    with pytest.raises(RegistryError, match="truncated upload"):
        read("short:q", base, tmp_path)


def test_a_manifest_without_a_model_layer_is_named(registry, model_blob, tmp_path):
    reg, base = registry()
    reg.add_model("library/adapter", "q", model_blob, media_type="application/vnd.ollama.image.adapter")
    with pytest.raises(RegistryError, match="no application/vnd.ollama.image.model layer.*adapter"):
        read("adapter:q", base, tmp_path)


def test_a_separate_vision_projector(registry, model_blob, tmp_path):
    from ollama_gpu.planner.placement import UnpredictableModel, place
    from tests.unit.test_planner_gguf import MOE_META, moe_tensors, write_gguf

    projector = {"mediaType": "application/vnd.ollama.image.projector", "digest": "sha256:" + "0" * 64, "size": 600_000_000}
    reg, base = registry()
    # llama runs on the llama.cpp runner anyway: the plan stands, with a note that the projector is not budgeted.
    reg.add_model("library/llava", "q", model_blob, extra_layers=[projector])
    remote = read("llava:q", base, tmp_path)
    assert any("vision projector (600 MB)" in note and "does not count" in note for note in remote.notes)
    # A Go-engine architecture falls back to the llama.cpp runner with a separate projector: refused.
    moe = write_gguf(tmp_path / "moe.gguf", "qwen3moe", MOE_META, moe_tensors()).read_bytes()
    reg.add_model("library/vl", "q", moe, extra_layers=[projector])
    with pytest.raises(UnpredictableModel, match="separate layer, so Ollama 0.24.0 loads this qwen3moe model on the llama.cpp runner"):
        place(read("vl:q", base, tmp_path).geometry, gpu_free_vram=None, gpu_overhead=0, num_ctx=512,
              kv_cache_type="f16", flash_attention=True, num_parallel=1)


def test_a_missing_model_and_a_non_gguf_blob_are_named(registry, tmp_path):
    reg, base = registry()
    with pytest.raises(RegistryError, match="is not in registry"):
        read("nothing:here", base, tmp_path)
    reg.add_model("library/text", "q", b"hello, not a model" * 10)
    with pytest.raises(RegistryError, match="not a GGUF file"):
        read("text:q", base, tmp_path)


def test_scripts_plan_reads_the_model_from_the_registry(registry, model_blob, tmp_path, monkeypatch, capsys):
    from ollama_gpu.planner.cli import main

    monkeypatch.setenv("OLLAMA_GPU_CACHE", str(tmp_path / "cache"))
    reg, base = registry()
    reg.add_model("library/tiny", "q", model_blob)
    assert main(["--model", "tiny:q", "--registry", base, "--gpu", "none", "--num-ctx", "256", "--num-predict", "100", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["model"], plan["layers"]["total"], plan["engine"]) == ("tiny:q", 3, "llama.cpp")
    assert main(["--model", "nothing:here", "--registry", base]) == 2
    assert "is not in registry" in capsys.readouterr().err


def test_the_stack_plans_from_the_registry_and_falls_back_with_a_reason(registry, model_blob, tmp_path, monkeypatch):
    from ollama_gpu.config_loader import load_settings
    from ollama_gpu.errors import ConfigError
    from ollama_gpu.stack_plan import resolve_model

    monkeypatch.delenv("OLLAMA_GPU_NO_REGISTRY")
    monkeypatch.setenv("OLLAMA_GPU_CACHE", str(tmp_path / "cache"))
    reg, base = registry()
    reg.add_model("library/tiny", "q", model_blob)
    settings = load_settings("local", {"profile": "none", "model": {"base": "tiny:q", "alias": "tiny:ctx"}})
    source = resolve_model(settings, registry=base)
    assert (source.geometry.name, source.geometry.block_count, source.notes) == ("tiny:q", 3, ())

    missing = load_settings("local", {"profile": "none", "model": {"base": "nothing:here", "alias": "x:y"}})
    with pytest.raises(ConfigError, match=r"ollama-gpu:model.base = 'nothing:here': .* is not in registry"):
        resolve_model(missing, registry=base)

    # No registry answers: the catalog's model is planned with a warning, any other gets none.
    unreachable = "http://127.0.0.1:1"
    catalog = load_settings("local", {"profile": "none"})
    source = resolve_model(catalog, registry=unreachable)
    assert source.geometry.name == "tinyllama:1.1b"
    assert "unreachable" in source.notes[0] and "built-in geometry" in source.notes[0]
    nothing = resolve_model(settings, registry=unreachable)
    assert nothing.geometry is None and nothing.notes[0].startswith("no plan: registry http://127.0.0.1:1 is unreachable")


def test_a_local_gguf_wins_over_the_registry(tmp_path, monkeypatch):
    from ollama_gpu.config_loader import load_settings
    from ollama_gpu.stack_plan import resolve_model
    from tests.unit.test_planner_gguf import LLAMA_META, write_gguf

    monkeypatch.delenv("OLLAMA_GPU_NO_REGISTRY")
    path = write_gguf(tmp_path / "local.gguf", "llama", LLAMA_META, [("blk.0.attn_q.weight", "F32", (64, 64))])
    settings = load_settings("local", {"profile": "none", "model": {"ggufPath": str(path)}})
    source = resolve_model(settings, registry="http://127.0.0.1:1")
    assert (source.geometry.architecture, source.notes) == ("llama", ())
