"""The ollama-gpu policy pack, driven the way `pulumi preview --policy-pack policy` drives it.

The pack is started as Pulumi starts it (`python -u -m pulumi.policy <engine> .` inside policy/, with
the interpreter of the virtualenv PulumiPolicy.yaml names) and each resource goes through the
analyzer's gRPC Analyze call, so the tests cover the wire format too: protobuf numbers, secrets,
unknown values, and the provider inputs that the SDK JSON-encodes.
"""

import json
import os
import subprocess
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from ollama_gpu.offline import run_program

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policy"
COMMITTED_STACKS = sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in REPO.glob("Pulumi.*.yaml"))

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
DOCKER_PROVIDER = "pulumi:providers:docker"
REMOTE_COMMAND = "command:remote:Command"

# Any explicit version will do: the pack must not care which one pins.env holds.
TAGGED_IMAGE = "ollama/ollama:1.2.3"
DIGEST = "sha256:" + "0123456789abcdef" * 4
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly"
PINNED_SSH_OPTS = ["-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/tmp/known_hosts"]
POLICY_NAMES = {
    "image-pinned",
    "api-not-public-without-opt-in",
    "models-volume-retained",
    "ssh-host-key-pinned",
    "quantized-kv-cache-needs-flash-attention",
}


def secret(value):
    return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": value}


def label(name, value):
    return {"label": name, "value": value}


def container(**changes):
    """A Container as the program registers it on a remote stack; every policy passes it."""
    props = {
        "image": DIGEST,
        "envs": ["OLLAMA_KV_CACHE_TYPE=q8_0", "OLLAMA_FLASH_ATTENTION=1", "OLLAMA_KEEP_ALIVE=-1"],
        "ports": [{"internal": 11434, "external": 11434, "ip": "127.0.0.1", "protocol": "tcp"}],
        "labels": [],
    }
    props.update(changes)
    return props


def remote_command(**connection_changes):
    # pulumi-command marks the whole connection secret, since it can carry a private key.
    connection = {"host": "203.0.113.7", "port": 22, "user": "ubuntu", "agentSocketPath": "/tmp/a", "hostKey": HOST_KEY}
    connection.update(connection_changes)
    return {"connection": secret(connection), "create": "true"}


def ssh_provider(ssh_opts):
    # The SDK hands a provider's list inputs to the engine as JSON text.
    return {"host": "ssh://ubuntu@203.0.113.7:22", "sshOpts": json.dumps(ssh_opts)}


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    runtime = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())["runtime"]
    # normpath, not resolve: following the venv's python symlink would leave the virtualenv.
    python = os.path.normpath(POLICY_DIR / runtime["options"]["virtualenv"] / "bin" / "python")
    # A file, not a pipe, for stderr: nobody reads it while the pack runs, and a full pipe would stall it.
    log = tmp_path_factory.mktemp("policy-pack") / "stderr.log"
    with log.open("w") as stderr:
        pack = subprocess.Popen(
            [python, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
            cwd=POLICY_DIR,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    port = pack.stdout.readline().strip()
    if not port.isdigit():
        pack.kill()
        pack.communicate()
        pytest.fail(f"the policy pack did not start: {log.read_text()}")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield analyzer_pb2_grpc.AnalyzerStub(channel)
    channel.close()
    pack.terminate()
    pack.communicate()


def analyze(analyzer, resource_type, props, protect=False):
    """(policy name, enforcement level, message) for each diagnostic the pack reports."""
    properties = struct_pb2.Struct()
    properties.update(props)
    response = analyzer.Analyze(
        proto.AnalyzeRequest(
            type=resource_type,
            urn=f"urn:pulumi:test::ollama-gpu::{resource_type}::subject",
            name="subject",
            properties=properties,
            options=proto.AnalyzerResourceOptions(protect=protect),
        )
    )
    return [(d.policyName, d.enforcementLevel, d.message) for d in response.diagnostics]


def violations_of(analyzer, policy, resource_type, props, protect=False):
    found = analyze(analyzer, resource_type, props, protect)
    assert all(level == proto.MANDATORY for _, level, _ in found), found
    return [message for name, _, message in found if name == policy]


def test_the_pack_registers_the_five_policies_as_mandatory(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "ollama-gpu"
    assert {policy.name for policy in info.policies} == POLICY_NAMES
    assert {policy.enforcementLevel for policy in info.policies} == {proto.MANDATORY}


@pytest.mark.parametrize(
    "resource_type, props",
    [
        (REMOTE_IMAGE, {"name": TAGGED_IMAGE}),
        (REMOTE_IMAGE, {"name": f"{TAGGED_IMAGE}@{DIGEST}"}),
        (REMOTE_IMAGE, {"name": f"ollama/ollama@{DIGEST}"}),
        (REMOTE_IMAGE, {"name": "registry.example:5000/ollama/ollama:1.2.3"}),
        (CONTAINER, container(image=DIGEST)),
        (CONTAINER, container(image=TAGGED_IMAGE)),
    ],
    ids=["tag", "tag-and-digest", "digest", "registry-port-and-tag", "container-image-id", "container-tag"],
)
def test_image_pinned_passes(analyzer, resource_type, props):
    assert violations_of(analyzer, "image-pinned", resource_type, props) == []


@pytest.mark.parametrize(
    "resource_type, props, problem",
    [
        (REMOTE_IMAGE, {"name": "ollama/ollama"}, "has no tag"),
        (REMOTE_IMAGE, {"name": "ollama/ollama:latest"}, "moving tag 'latest'"),
        (REMOTE_IMAGE, {"name": "registry.example:5000/ollama/ollama"}, "has no tag"),
        (CONTAINER, container(image="ollama/ollama:latest"), "moving tag 'latest'"),
    ],
    ids=["bare-repository", "latest", "registry-port-is-not-a-tag", "container-latest"],
)
def test_image_pinned_fails(analyzer, resource_type, props, problem):
    [message] = violations_of(analyzer, "image-pinned", resource_type, props)
    assert problem in message
    assert "ollama-gpu:server.image" in message


@pytest.mark.parametrize(
    "props",
    [
        container(),
        container(ports=[{"internal": 11434, "external": 11434, "ip": "::1"}]),
        container(ports=[{"internal": 11434, "external": 11434, "ip": "127.0.0.2"}]),
        container(
            ports=[{"internal": 11434, "external": 11434, "ip": "0.0.0.0"}],
            labels=[label("ollama-gpu.allow-public-bind", "true")],
        ),
        container(
            ports=[{"internal": 11434, "external": 11434, "ip": "10.0.0.5"}],
            labels=[label("ollama-gpu.router-backend", "true")],
        ),
    ],
    ids=["ipv4-loopback", "ipv6-loopback", "loopback-range", "public-with-opt-in", "router-backend-on-private-address"],
)
def test_public_bind_passes(analyzer, props):
    assert violations_of(analyzer, "api-not-public-without-opt-in", CONTAINER, props) == []


@pytest.mark.parametrize(
    "ports, labels, where",
    [
        ([{"internal": 11434, "external": 11434}], [], "every interface"),
        ([{"internal": 11434, "external": 11434, "ip": "0.0.0.0"}], [], "0.0.0.0"),
        ([{"internal": 11434, "external": 11434, "ip": "::"}], [], "on ::"),
        ([{"internal": 11434, "external": 11434, "ip": "10.0.0.5"}], [], "10.0.0.5"),
        (
            [{"internal": 11434, "external": 11434, "ip": "0.0.0.0"}],
            [label("ollama-gpu.allow-public-bind", "false")],
            "0.0.0.0",
        ),
        ([{"internal": 11434, "external": 11434, "ip": "203.0.113.10"}], [label("ollama-gpu.router-backend", "true")], "203.0.113.10"),
        ([{"internal": 11434, "external": 11434, "ip": "0.0.0.0"}], [label("ollama-gpu.router-backend", "true")], "0.0.0.0"),
    ],
    ids=["no-ip-means-all", "all-ipv4", "all-ipv6", "private-address", "opt-in-label-false",
         "router-backend-on-public-address", "router-backend-on-all-addresses"],
)
def test_public_bind_fails(analyzer, ports, labels, where):
    props = container(ports=ports, labels=labels)
    [message] = violations_of(analyzer, "api-not-public-without-opt-in", CONTAINER, props)
    assert "port 11434 " in message
    assert where in message
    assert "ollama-gpu:server.bindAddress" in message
    assert "ollama-gpu:server.allowPublicBind" in message


def test_public_bind_reports_each_exposed_port(analyzer):
    ports = [
        {"internal": 11434, "external": 11434, "ip": "127.0.0.1"},
        {"internal": 11434, "external": 8080, "ip": "0.0.0.0"},
        {"internal": 9090, "external": 9090, "ip": "192.168.1.4"},
    ]
    messages = violations_of(analyzer, "api-not-public-without-opt-in", CONTAINER, container(ports=ports))
    assert [("0.0.0.0" in m, "192.168.1.4" in m) for m in messages] == [(True, False), (False, True)]


@pytest.mark.parametrize(
    "props, protect",
    [
        ({"name": "ollama", "labels": [label("ollama-gpu.retain-on-delete", "true")]}, False),
        ({"name": "ollama"}, True),
    ],
    ids=["retain-declared", "protected"],
)
def test_models_volume_retained_passes(analyzer, props, protect):
    assert violations_of(analyzer, "models-volume-retained", VOLUME, props, protect) == []


@pytest.mark.parametrize(
    "props",
    [
        {"name": "ollama"},
        {"name": "ollama", "labels": [label("ollama-gpu.retain-on-delete", "false")]},
        {"name": "ollama", "labels": [label("ollama-gpu.allow-public-bind", "true")]},
    ],
    ids=["nothing", "label-false", "other-label"],
)
def test_models_volume_retained_fails(analyzer, props):
    [message] = violations_of(analyzer, "models-volume-retained", VOLUME, props)
    assert "Volume 'ollama'" in message
    assert "retain_on_delete=True" in message


@pytest.mark.parametrize(
    "resource_type, props",
    [
        (REMOTE_COMMAND, remote_command()),
        ("command:remote:CopyToRemote", remote_command()),
        ("command:local:Command", {"create": "true"}),
        (DOCKER_PROVIDER, ssh_provider(PINNED_SSH_OPTS)),
        (DOCKER_PROVIDER, {"host": "ssh://ubuntu@203.0.113.7:22", "sshOpts": PINNED_SSH_OPTS}),
        (DOCKER_PROVIDER, ssh_provider(["-oStrictHostKeyChecking yes"])),
        (DOCKER_PROVIDER, {"host": "unix:///var/run/docker.sock"}),
    ],
    ids=[
        "command", "copy", "local-command", "provider-json-opts", "provider-list-opts", "joined-option", "local-socket"
    ],
)
def test_ssh_host_key_pinned_passes(analyzer, resource_type, props):
    assert violations_of(analyzer, "ssh-host-key-pinned", resource_type, props) == []


@pytest.mark.parametrize(
    "resource_type, props, expected",
    [
        (REMOTE_COMMAND, remote_command(hostKey=None), "without connection.hostKey"),
        (REMOTE_COMMAND, remote_command(hostKey="  "), "without connection.hostKey"),
        ("command:remote:CopyToRemote", remote_command(hostKey=None), "without connection.hostKey"),
        (DOCKER_PROVIDER, {"host": "ssh://ubuntu@203.0.113.7:22"}, "no StrictHostKeyChecking option"),
        (DOCKER_PROVIDER, ssh_provider(["-o", "StrictHostKeyChecking=no"]), "StrictHostKeyChecking=no"),
        (DOCKER_PROVIDER, ssh_provider(["-o", "StrictHostKeyChecking=accept-new"]), "=accept-new"),
        (
            DOCKER_PROVIDER,
            ssh_provider(["-o", "StrictHostKeyChecking=no", *PINNED_SSH_OPTS]),
            "StrictHostKeyChecking=no",
        ),
    ],
    ids=[
        "no-host-key", "blank-host-key", "copy-no-host-key", "no-opts", "checking-off", "accept-new", "first-value-wins"
    ],
)
def test_ssh_host_key_pinned_fails(analyzer, resource_type, props, expected):
    [message] = violations_of(analyzer, "ssh-host-key-pinned", resource_type, props)
    assert expected in message
    assert "ollama-gpu:host.hostKey" in message


@pytest.mark.parametrize(
    "envs",
    [
        ["OLLAMA_KV_CACHE_TYPE=q8_0", "OLLAMA_FLASH_ATTENTION=1"],
        ["OLLAMA_KV_CACHE_TYPE=q4_0", "OLLAMA_FLASH_ATTENTION=true"],
        ["OLLAMA_KV_CACHE_TYPE=f16"],
        ["OLLAMA_KEEP_ALIVE=-1"],
        # Ollama reads any value strconv.ParseBool rejects as "on"; the rule follows Ollama.
        ["OLLAMA_KV_CACHE_TYPE=q8_0", "OLLAMA_FLASH_ATTENTION=on"],
    ],
    ids=["q8-with-fa", "q4-with-fa", "f16", "default-cache", "unparseable-means-on"],
)
def test_kv_cache_passes(analyzer, envs):
    assert violations_of(analyzer, "quantized-kv-cache-needs-flash-attention", CONTAINER, container(envs=envs)) == []


@pytest.mark.parametrize(
    "envs, state",
    [
        (["OLLAMA_KV_CACHE_TYPE=q8_0"], "not set"),
        (["OLLAMA_KV_CACHE_TYPE=q8_0", "OLLAMA_FLASH_ATTENTION=0"], "off (OLLAMA_FLASH_ATTENTION=0)"),
        (["OLLAMA_KV_CACHE_TYPE=q4_0", "OLLAMA_FLASH_ATTENTION=false"], "off (OLLAMA_FLASH_ATTENTION=false)"),
        (["OLLAMA_KV_CACHE_TYPE=Q8_0", "OLLAMA_FLASH_ATTENTION="], "not set"),
        (["OLLAMA_FLASH_ATTENTION=1", "OLLAMA_KV_CACHE_TYPE=q8_0", "OLLAMA_FLASH_ATTENTION=0"], "off"),
    ],
    ids=["fa-unset", "fa-0", "q4-fa-false", "uppercase-type-empty-fa", "later-duplicate-wins"],
)
def test_kv_cache_fails(analyzer, envs, state):
    [message] = violations_of(analyzer, "quantized-kv-cache-needs-flash-attention", CONTAINER, container(envs=envs))
    assert state in message
    assert "ollama-gpu:server.env.flashAttention" in message


def test_the_programs_resources_as_registered_pass_every_policy(analyzer):
    resources = [
        (DOCKER_PROVIDER, ssh_provider(PINNED_SSH_OPTS), False),
        (REMOTE_COMMAND, remote_command(), False),
        (REMOTE_IMAGE, {"name": TAGGED_IMAGE, "keepLocally": True}, False),
        (VOLUME, {"name": "ollama", "labels": [label("ollama-gpu.retain-on-delete", "true")]}, False),
        (CONTAINER, container(), False),
    ]
    assert [analyze(analyzer, *resource) for resource in resources] == [[]] * len(resources)


@pytest.mark.parametrize("stack", COMMITTED_STACKS)
def test_every_committed_stack_as_the_program_registers_it_passes_the_pack(analyzer, stack, monkeypatch):
    # The program runs offline under the project's recording engine stand-in (what `make plan`
    # shows), which also sees the retain_on_delete option the analyzer protocol leaves out.
    from ollama_gpu.stack_render import run_stack_file

    monkeypatch.setenv("OLLAMA_GPU_OFFLINE", "1")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/test-agent.sock")
    run = run_stack_file(stack)
    found = {
        f"{resource.type} {resource.name}": analyze(analyzer, resource.type, resource.inputs, resource.protect)
        for resource in run.resources
    }
    assert {name: diagnostics for name, diagnostics in found.items() if diagnostics} == {}
    # The pack accepts a volume on its retain label; this is the option the label stands for.
    assert [resource.retain_on_delete for resource in run.of_type(VOLUME)] == [True]


def test_a_fleet_with_its_router_as_the_program_registers_it_passes_the_pack(analyzer, monkeypatch):
    from tests.unit.test_program_fleet import fleet_config

    monkeypatch.setenv("OLLAMA_GPU_OFFLINE", "1")
    monkeypatch.setenv("OLLAMA_GPU_NO_REGISTRY", "1")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/test-agent.sock")
    run = run_program("a10", fleet_config(), secret_keys=["router"])
    found = {
        f"{resource.type} {resource.name}": analyze(analyzer, resource.type, resource.inputs, resource.protect)
        for resource in run.resources
    }
    assert {name: diagnostics for name, diagnostics in found.items() if diagnostics} == {}
    assert len(run.of_type(CONTAINER)) == 3


def test_an_unknown_value_in_a_preview_is_reported_not_judged(analyzer):
    found = analyze(analyzer, REMOTE_IMAGE, {"name": UNKNOWN_STRING_VALUE})
    assert [(name, level) for name, level, _ in found] == [("image-pinned", proto.ADVISORY)]
    assert "can't run policy" in found[0][2]


def test_a_llama_server_stack_as_the_program_registers_it_passes_the_pack(analyzer, offline_env, monkeypatch):
    from ollama_gpu.offline import run_program
    from tests.unit.conftest import remote_config

    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/test-agent.sock")
    run = run_program("a10", remote_config("a10", {"server": {"engine": "llama-server"}}))
    found = {
        f"{resource.type} {resource.name}": analyze(analyzer, resource.type, resource.inputs, resource.protect)
        for resource in run.resources
    }
    assert {name: diagnostics for name, diagnostics in found.items() if diagnostics} == {}
    assert "docker:index/container:Container llama-server-container" in found
