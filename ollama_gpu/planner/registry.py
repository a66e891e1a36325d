"""A model's geometry straight from an Ollama registry: the manifest, then the first megabytes of
the model blob through HTTP range requests, never the whole file.

Names and URLs follow Ollama 0.24.0: types/model/name.go ParseName ([host/][namespace/]model[:tag],
defaults registry.ollama.ai, library, latest), server/images.go pullModelManifest
(GET {base}/v2/{namespace}/{model}/manifests/{tag} with the docker manifest v2 Accept header) and
the blob URL GET {base}/v2/{namespace}/{model}/blobs/{digest}, whose redirect to another host (the
registry's storage) is followed with the Range header kept. ``insecure`` means plain HTTP, as
Ollama's --insecure does (images.go: base.Scheme = "http").

Parsed headers are cached per blob digest (content-addressed, so never stale) and each manifest
under its name, so a planner without network can still plan a model it has seen, with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.gguf_geometry import geometry_from_header
from ollama_gpu.planner.gguf_header import (
    ArrayInfo,
    GGUFError,
    GGUFHeader,
    TensorRecord,
    read_header,
)

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
PROJECTOR_MEDIA_TYPE = "application/vnd.ollama.image.projector"
FIRST_READ = 2 * 1024 * 1024
TIMEOUT_S = 15.0
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")


class RegistryError(ValueError):
    """The registry could not give the model's header; the message says what happened."""


class RegistryUnreachable(RegistryError):
    """No answer at all: the plan proceeds without this model's geometry."""


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """types/model/name.go ParseName and IsValid (digest names are not accepted here)."""
        rest, tag = text, ""
        if rest.rfind(":") > rest.rfind("/"):
            rest, _, tag = rest.rpartition(":")
        parts = rest.split("/")
        if len(parts) > 3 or not all(parts):
            raise RegistryError(f"{text!r} is not a model name: use [host/][namespace/]model[:tag]")
        host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
        if len(parts) == 3:
            host, namespace, model = parts
        elif len(parts) == 2:
            namespace, model = parts
        else:
            (model,) = parts
        tag = tag or DEFAULT_TAG
        checks = ((host, _HOST, 350), (namespace, _NAMESPACE, 80), (model, _PART, 80), (tag, _PART, 80))
        if not all(pattern.match(part) and len(part) <= limit for part, pattern, limit in checks):
            raise RegistryError(f"{text!r} is not a valid Ollama model name (letters, digits, _ . - in each part)")
        return cls(host, namespace, model, tag)

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.model}"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"


@dataclass(frozen=True)
class RemoteModel:
    """What the registry told about a model: its blob and the geometry read from its header."""

    name: ModelName
    digest: str
    size: int
    geometry: ModelGeometry
    projector_bytes: int
    notes: tuple[str, ...] = field(default=())


def default_cache_dir() -> Path:
    root = os.environ.get("OLLAMA_GPU_CACHE")
    return Path(root) if root else Path(__file__).resolve().parents[2] / ".cache"


class _SameHostCredentials(urllib.request.HTTPRedirectHandler):
    """Follows redirects without handing the registry's token to another host: blob storage
    (S3-style presigned URLs) rejects a request that carries a second credential."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_SameHostCredentials)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class _Client:
    def __init__(self, base: str, name: ModelName, timeout: float):
        self.base, self.name, self.timeout = base.rstrip("/"), name, timeout
        self.token: str | None = None

    def open(self, path: str, headers: dict[str, str]) -> Any:
        url = f"{self.base}/v2/{self.name.repository}/{path}"
        for attempt in range(2):
            request = urllib.request.Request(url, headers=headers)
            if self.token:
                request.add_header("Authorization", f"Bearer {self.token}")
            try:
                return _OPENER.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as error:
                if error.code == 416:
                    return error
                challenge = error.headers.get("WWW-Authenticate", "") if error.headers else ""
                if error.code == 401 and attempt == 0 and challenge.lower().startswith("bearer "):
                    self.token = self._anonymous_token(challenge)
                    continue
                raise RegistryError(self._status_message(error.code, path)) from None
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise RegistryUnreachable(f"registry {self.base} is unreachable ({reason})") from None
        raise RegistryError(self._status_message(401, path))

    def _anonymous_token(self, challenge: str) -> str:
        """The docker registry token flow for public repositories: GET realm?service=&scope=."""
        fields = dict(_CHALLENGE.findall(challenge))
        realm = fields.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"registry {self.base} asks for credentials the planner does not have")
        query = urllib.parse.urlencode({key: value for key, value in fields.items() if key in ("service", "scope")})
        try:
            with _OPENER.open(f"{realm}?{query}", timeout=self.timeout) as response:
                answer = json.loads(response.read(1024 * 1024))
        except (urllib.error.URLError, OSError, ValueError):
            raise RegistryError(f"registry {self.base} asks for a token that its realm {realm} did not give") from None
        token = answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise RegistryError(f"registry {self.base} asks for a token that its realm {realm} did not give")
        return token

    def _status_message(self, code: int, path: str) -> str:
        if code == 404 and path.startswith("manifests/"):
            return f"{self.name} is not in registry {self.base} (HTTP 404 for its manifest)"
        if code in (401, 403):
            return f"registry {self.base} refused {self.name} (HTTP {code}): the planner reads public models only"
        return f"registry {self.base} answered HTTP {code} for {self.name.repository}/{path}"


def base_url(name: ModelName, registry: str | None, insecure: bool) -> str:
    """The registry's root URL: a configured mirror wins over the host in the name."""
    if registry:
        if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", registry):
            raise RegistryError(f"registry {registry!r} is not an http(s) URL")
        return registry
    return f"{'http' if insecure else 'https'}://{name.host}"


def fetch_manifest(client: _Client) -> dict[str, Any]:
    with client.open(f"manifests/{client.name.tag}", {"Accept": MANIFEST_ACCEPT}) as response:
        body = response.read(4 * 1024 * 1024)
    try:
        manifest = json.loads(body)
    except ValueError:
        raise RegistryError(f"the manifest of {client.name} from {client.base} is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise RegistryError(f"the manifest of {client.name} from {client.base} has no layers list")
    return manifest


def model_layer(manifest: dict[str, Any], name: ModelName, base: str) -> tuple[str, int, int]:
    """The model blob (digest, size) and the projectors' total size.

    server/images.go GetModel: the last application/vnd.ollama.image.model layer is the model.
    """
    layers = [layer for layer in manifest["layers"] if isinstance(layer, dict)]
    models = [layer for layer in layers if layer.get("mediaType") == MODEL_MEDIA_TYPE]
    if not models:
        kinds = ", ".join(sorted({str(layer.get("mediaType")) for layer in layers})) or "none"
        raise RegistryError(
            f"the manifest of {name} from {base} has no {MODEL_MEDIA_TYPE} layer (layers: {kinds}): it is not a model Ollama can run"
        )
    digest, size = models[-1].get("digest"), models[-1].get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest) or not isinstance(size, int) or size < 0:
        raise RegistryError(f"the manifest of {name} from {base} names its model layer badly ({digest!r}, size {size!r})")
    projectors = sum(layer.get("size", 0) for layer in layers
                     if layer.get("mediaType") == PROJECTOR_MEDIA_TYPE and isinstance(layer.get("size"), int))
    return digest, size, projectors


class _BlobReader:
    """read_at over HTTP ranges; a server that ignores Range is read as one stream instead."""

    def __init__(self, client: _Client, digest: str, size: int):
        self.client, self.digest, self.size = client, digest, size
        self.stream: Any = None
        self.streamed = 0
        self.notes: list[str] = []

    def read_at(self, offset: int, size: int) -> bytes:
        if self.stream is not None:
            return self._from_stream(offset, size)
        response = self.client.open(f"blobs/{self.digest}", {"Range": f"bytes={offset}-{offset + size - 1}"})
        status = getattr(response, "status", None) or response.getcode()
        if status == 416:
            return b""  # the range starts past the end: the blob is shorter than asked
        if status == 206:
            with response:
                total = _content_range_total(response.headers.get("Content-Range", ""))
                if total is not None:
                    self.size = total
                return response.read(size)
        if status == 200:
            self.notes.append(
                f"registry {self.client.base} ignores HTTP range requests (answered 200, not 206): the header was read "
                "from the start of the full blob and the download stopped there"
            )
            self.stream = response
            length = response.headers.get("Content-Length")
            if length and length.isdigit():
                self.size = int(length)
            return self._from_stream(offset, size)
        raise RegistryError(f"registry {self.client.base} answered HTTP {status} for blob {self.digest}")

    def _from_stream(self, offset: int, size: int) -> bytes:
        if offset != self.streamed:
            raise RegistryError("internal: stream reads must be sequential")
        chunk = self.stream.read(size)
        self.streamed += len(chunk)
        return chunk

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def _content_range_total(value: str) -> int | None:
    match = re.match(r"^bytes \d+-\d+/(\d+)$", value.strip())
    return int(match.group(1)) if match else None


def read_remote_model(
    model: str,
    *,
    registry: str | None = None,
    insecure: bool = False,
    cache_dir: Path | None = None,
    timeout: float = TIMEOUT_S,
) -> RemoteModel:
    """The geometry of ``model`` (an Ollama name) from its registry, or from the cache.

    Raises RegistryUnreachable when no registry answers and nothing is cached for the name,
    RegistryError (with the reason) for every other failure.
    """
    name = ModelName.parse(model)
    base = base_url(name, registry, insecure)
    cache = Cache(cache_dir or default_cache_dir())
    client = _Client(base, name, timeout)
    notes: list[str] = []
    try:
        manifest = fetch_manifest(client)
        cache.store_manifest(base, name, manifest)
    except RegistryUnreachable as error:
        manifest = cache.manifest(base, name)
        if manifest is None:
            raise
        notes.append(f"{error}; planned from the manifest cached for {name}")
    digest, size, projectors = model_layer(manifest, name, base)
    header = cache.header(digest)
    if header is None:
        reader = _BlobReader(client, digest, size)
        try:
            header = read_header(reader.read_at, first_read=FIRST_READ)
        except GGUFError as error:
            if str(error).startswith("file is truncated"):
                raise RegistryError(
                    f"blob {digest} of {name} ends inside its GGUF header ({error}): the registry holds a truncated upload"
                ) from None
            raise RegistryError(f"blob {digest} of {name} is not a GGUF model Ollama can load ({error})") from None
        finally:
            reader.close()
        if reader.size != size:
            raise RegistryError(
                f"blob {digest} of {name} is {reader.size} bytes but its manifest says {size}: the registry holds a truncated upload"
            )
        notes.extend(reader.notes)
        cache.store_header(digest, header)
    try:
        geometry = geometry_from_header(header, model, file_size=size)
    except GGUFError as error:
        raise RegistryError(f"blob {digest} of {name}: {error}") from None
    if projectors:
        geometry = _with_projector(geometry, name, projectors, notes)
    return RemoteModel(name, digest, size, geometry, projectors, tuple(notes))


def _with_projector(geometry: ModelGeometry, name: ModelName, projectors: int, notes: list[str]) -> ModelGeometry:
    """A separate projector layer: llm/server.go NewLlamaServer refuses "split vision models" on
    the Go engine and falls back to the llama.cpp runner, whose llamaServer.Load then sums
    projectorMemoryRequirements over the LoRA paths, not the projector, so it is never budgeted."""
    size = f"{projectors / 1e6:.0f} MB"
    rules = geometry.rules
    if rules is not None and rules.engine == "ollama" and not rules.refusal:
        reason = (
            f"{name} keeps its vision projector ({size}) in a separate layer, so Ollama 0.24.0 loads this "
            f"{geometry.architecture} model on the llama.cpp runner instead of its Go engine, a fallback the "
            "planner does not model"
        )
        return dataclasses.replace(geometry, rules=dataclasses.replace(rules, refusal=reason))
    notes.append(
        f"{name} has a separate vision projector ({size}) that Ollama 0.24.0 does not count in its layout "
        "(llamaServer.Load sums the LoRA paths instead): keep that much VRAM free on the first GPU"
    )
    return geometry


class Cache:
    """Parsed headers by digest and manifests by registry and name, as JSON files."""

    def __init__(self, root: Path):
        self.root = root

    def _manifest_path(self, base: str, name: ModelName) -> Path:
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", base.split("://", 1)[-1])
        return self.root / "manifests" / host / name.namespace / name.model / name.tag

    def manifest(self, base: str, name: ModelName) -> dict[str, Any] | None:
        return _load_json(self._manifest_path(base, name))

    def store_manifest(self, base: str, name: ModelName, manifest: dict[str, Any]) -> None:
        _store_json(self._manifest_path(base, name), manifest)

    def header(self, digest: str) -> GGUFHeader | None:
        data = _load_json(self.root / "gguf-headers" / f"{digest.replace(':', '-')}.json")
        if data is None:
            return None
        try:
            return _header_from_json(data)
        except (KeyError, TypeError, ValueError):
            return None  # an unreadable entry is read again from the registry

    def store_header(self, digest: str, header: GGUFHeader) -> None:
        _store_json(self.root / "gguf-headers" / f"{digest.replace(':', '-')}.json", _header_to_json(header))


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _store_json(path: Path, value: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(value))
        temporary.replace(path)
    except OSError:
        pass  # a read-only cache only costs a second read next time


def _header_to_json(header: GGUFHeader) -> dict[str, Any]:
    def encode(value: Any) -> Any:
        if isinstance(value, ArrayInfo):
            return {"array": [value.element_type, value.length]}
        return {"value": value}

    return {
        "version": header.version,
        "metadata": {key: encode(value) for key, value in header.metadata.items()},
        "tensors": [[t.name, list(t.dims), t.type_id, t.offset] for t in header.tensors],
        "data_offset": header.data_offset,
        "alignment": header.alignment,
    }


def _header_from_json(data: dict[str, Any]) -> GGUFHeader:
    def decode(value: dict[str, Any]) -> Any:
        if "array" in value:
            return ArrayInfo(*value["array"])
        return value["value"]

    return GGUFHeader(
        version=data["version"],
        metadata={key: decode(value) for key, value in data["metadata"].items()},
        tensors=tuple(TensorRecord(name, tuple(dims), type_id, offset) for name, dims, type_id, offset in data["tensors"]),
        data_offset=data["data_offset"],
        alignment=data["alignment"],
    )

