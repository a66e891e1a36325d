"""The opt-in team endpoint as the program registers it (mock-backed, through ollama_gpu.offline):
off unless enabled; a Gateway component whose children carry its name; Caddy on the host's network
with the rendered Caddyfile as a secret upload; the CA kept in a retained volume and its root read
back after every start and exported in plain; keys nowhere but that upload; a rotated key changes
the gateway container only; bad or plain-text keys and a gateway that could be bypassed refused
with one message that shows no key."""

import json

import pytest
import yaml

from ollama_gpu.config_loader import load_settings, values_from_stack_file
from ollama_gpu.errors import ConfigError
from ollama_gpu.stack_render import _format_run, secret_keys
from tests.unit.conftest import (
    HOST_ADDRESS,
    REPO,
    LOCAL_COMMAND,
    REMOTE_COMMAND,
    STACKS,
    VOLUME,
    is_secret,
    local_config,
    remote_config,
    ollama_stack_values,
)

pytestmark = pytest.mark.usefixtures("ssh_agent")

KEY_A = "3f9c" * 16
KEY_B = "Team-Key_" + "x" * 30
GATEWAY_TYPE = "ollama-gpu:index:Gateway"


def _enabled(keys=(KEY_A, KEY_B), **gateway):
    return remote_config("a10", {"gateway": {"enabled": True, "apiKeys": list(keys), **gateway}})


def _gateway_run(deploy, keys=(KEY_A, KEY_B), **gateway):
    return deploy("a10", _enabled(keys, **gateway), secret_keys=["gateway"])


@pytest.mark.parametrize("stack", STACKS)
def test_no_stack_runs_a_gateway_unless_it_enables_one(stack, deploy):
    run = deploy(stack, ollama_stack_values(stack))
    assert not run.of_type(GATEWAY_TYPE)
    assert not [name for name in run.names() if name.startswith("gateway")]
    assert run.outputs["gateway_url"] == "" and run.outputs["gateway_ca_root"] == ""


def test_the_gateway_is_one_component_whose_children_carry_its_name(deploy):
    run = _gateway_run(deploy)
    (component,) = run.of_type(GATEWAY_TYPE)
    children = [r for r in run.resources if r.parent == component.urn]
    assert sorted(r.name for r in children) == ["gateway-ca-root", "gateway-container", "gateway-data", "gateway-image"]


def test_caddy_runs_on_the_host_network_with_the_caddyfile_as_a_secret_upload(deploy):
    run = _gateway_run(deploy)
    gateway = run.by_name("gateway-container")
    assert gateway.inputs["networkMode"] == "host"
    assert "ports" not in gateway.inputs, "Caddy binds its own port; Docker publishes nothing"
    assert gateway.inputs["image"] == "sha256:offline-caddy:2.6.2"
    assert is_secret(gateway.inputs["uploads"]), "the upload holds the keys"
    (upload,) = gateway.inputs["uploads"]["value"]
    assert upload["file"] == "/etc/caddy/Caddyfile"
    caddyfile = upload["content"]
    assert f"https://{HOST_ADDRESS}:8443 {{" in caddyfile and "tls internal" in caddyfile
    assert "reverse_proxy http://127.0.0.1:11434 {" in caddyfile
    assert [line.strip() for line in caddyfile.splitlines() if "Bearer " in line] == [
        f'header Authorization "Bearer {KEY_A}"', f'header Authorization "Bearer {KEY_B}"']
    assert gateway.delete_before_replace is True
    ollama = run.by_name("ollama-container")
    assert [port["ip"] for port in ollama.inputs["ports"]] == ["127.0.0.1"], "Ollama stays on loopback"
    assert ollama.urn in gateway.depends_on


def test_the_ca_lives_in_a_retained_volume_and_its_root_is_read_after_every_start(deploy):
    run = _gateway_run(deploy)
    volume = run.by_name("gateway-data")
    assert volume.type == VOLUME and volume.retain_on_delete is True and volume.protect is False
    assert {"label": "ollama-gpu.retain-on-delete", "value": "true"} in volume.inputs["labels"]
    container = run.by_name("gateway-container")
    assert container.inputs["volumes"] == [{"volumeName": "ollama-gateway-data", "containerPath": "/data"}]
    read_root = run.by_name("gateway-ca-root")
    assert read_root.type == REMOTE_COMMAND
    assert read_root.inputs["triggers"] == ["gateway-container-id"], "a new container is read again"
    assert container.urn in read_root.depends_on
    assert "CONTAINER_NAME=ollama-gateway" in read_root.inputs["create"]
    assert "CA_ROOT_PATH=/data/caddy/pki/authorities/local/root.crt" in read_root.inputs["create"]


def test_the_url_and_ca_root_are_plain_outputs_and_no_key_is_anywhere_but_the_upload(deploy):
    run = _gateway_run(deploy)
    assert run.outputs["gateway_url"] == f"https://{HOST_ADDRESS}:8443"
    assert run.outputs["gateway_ca_root"] == "", "the mock command prints nothing; the output itself is not secret"
    assert KEY_A not in json.dumps(run.outputs, default=repr) and KEY_A not in "".join(run.warnings)
    for resource in run.resources:
        text = json.dumps(resource.inputs if resource.name != "gateway-container" else
                          {k: v for k, v in resource.inputs.items() if k != "uploads"})
        assert KEY_A not in text and KEY_B not in text, resource.name


def test_rotating_a_key_changes_the_gateway_container_only(deploy):
    before = _gateway_run(deploy, keys=(KEY_A, KEY_B))
    after = _gateway_run(deploy, keys=(KEY_A,))
    old, new = ({r.name: r.inputs for r in run.resources} for run in (before, after))
    assert {name for name in old if old[name] != new[name]} == {"gateway-container"}


def test_a_local_stack_serves_loopback_through_a_local_command(deploy):
    run = deploy("local", local_config({"gateway": {"enabled": True, "apiKeys": [KEY_A]}}), secret_keys=["gateway"])
    assert run.by_name("gateway-ca-root").type == LOCAL_COMMAND
    assert run.outputs["gateway_url"] == "https://127.0.0.1:8443"


def test_with_a_domain_caddy_asks_acme_and_no_root_is_read(deploy):
    run = _gateway_run(deploy, domain="llm.example.com", acmeEmail="ops@example.com", port=443)
    assert "gateway-ca-root" not in run.names()
    caddyfile = run.by_name("gateway-container").inputs["uploads"]["value"][0]["content"]
    assert "https://llm.example.com:443 {" in caddyfile and "\ttls ops@example.com {\n\n\t}\n" in caddyfile
    assert run.outputs["gateway_url"] == "https://llm.example.com:443"


CA_ROOT = "-----BEGIN CERTIFICATE-----\n" + "QUJD" * 16 + "\n" + "REVG" * 4 + "\n-----END CERTIFICATE-----\n"


def test_a_private_acme_ca_is_asked_and_its_root_uploaded_beside_the_caddyfile(deploy):
    run = _gateway_run(deploy, domain="llm.example.com", acmeEmail="ops@example.com",
                       acmeDirectory="https://ca.internal:9000/acme/acme/directory", acmeCaRoot=CA_ROOT)
    caddyfile, root = run.by_name("gateway-container").inputs["uploads"]["value"]
    assert "\t\tca https://ca.internal:9000/acme/acme/directory\n\t\tca_root /etc/caddy/acme-ca-root.pem\n" in caddyfile["content"]
    assert (root["file"], root["content"]) == ("/etc/caddy/acme-ca-root.pem", CA_ROOT)


@pytest.mark.parametrize("overrides, key, problem", [
    ({"gateway": {"acmeDirectory": "https://ca.internal/dir"}}, "gateway.acmeDirectory", "does nothing without gateway.domain"),
    ({"gateway": {"domain": "llm.example.com", "acmeEmail": "ops@example.com", "acmeDirectory": "http://ca.internal/dir"}},
     "gateway.acmeDirectory", "is not an https:// URL"),
    ({"gateway": {"domain": "llm.example.com", "acmeEmail": "ops@example.com", "acmeDirectory": "https://ca/dir\n}"}},
     "gateway.acmeDirectory", "is not an https:// URL"),
    ({"gateway": {"domain": "llm.example.com", "acmeEmail": "ops@example.com", "acmeCaRoot": "not a certificate"}},
     "gateway.acmeCaRoot", "is not one PEM certificate"),
    ({"gateway": {"apiKeys": ["short-key"]}}, "gateway.apiKeys[0]", "is not 32–128 characters"),
    ({"gateway": {"apiKeys": [KEY_A + '" {\n}']}}, "gateway.apiKeys[0]", "is not 32–128 characters"),
    ({"gateway": {"apiKeys": [KEY_A, KEY_A]}}, "gateway.apiKeys[1]", "repeats an earlier key"),
    ({"gateway": {"apiKeys": []}}, "gateway.apiKeys", "admit no one"),
    ({"gateway": {"domain": "llm.example.com"}}, "gateway.acmeEmail", "is needed"),
    ({"gateway": {"domain": "203.0.113.9", "acmeEmail": "ops@example.com"}}, "gateway.domain", "is not a DNS name"),
    ({"gateway": {"port": 11434}}, "gateway.port", "is also server.port"),
    ({"gateway": {"image": "caddy:latest"}}, "gateway.image", "not pinned"),
    ({"server": {"bindAddress": "0.0.0.0", "allowPublicBind": True}}, "server.bindAddress", "past the gateway's keys"),
])
def test_a_gateway_that_cannot_work_or_could_be_bypassed_is_refused_without_showing_a_key(reject, overrides, key, problem):
    config = _enabled()
    for section, values in overrides.items():
        config[section] = {**config.get(section, {}), **values}
    message = reject("a10", config, secret_keys=["gateway"])
    assert f"ollama-gpu:{key} = " in message and problem in message
    assert KEY_A not in message and KEY_B not in message


def test_keys_not_set_as_secrets_are_refused_and_not_shown(reject):
    message = reject("a10", _enabled())
    assert "gateway.apiKeys[0] = [secret]: is stored in plain text" in message
    assert KEY_A not in message and KEY_B not in message


def test_a_stack_file_with_secret_keys_plans_offline_and_one_with_a_plain_key_is_refused(tmp_path):
    def stack_file(keys):
        path = tmp_path / "Pulumi.team.yaml"
        path.write_text(yaml.safe_dump({"config": {
            "ollama-gpu:profile": "none", "ollama-gpu:gateway": {"enabled": True, "apiKeys": keys},
        }}))
        return values_from_stack_file(path)

    settings = load_settings("team", stack_file([{"secure": "v1:AAAA"}, {"secure": "v1:BBBB"}]))
    assert settings.gateway.enabled and len(settings.gateway.api_keys) == 2
    with pytest.raises(ConfigError) as refused:
        load_settings("team", stack_file([{"secure": "v1:AAAA"}, KEY_A]))
    assert "ollama-gpu:gateway.apiKeys[1] = [secret]: is stored in plain text" in str(refused.value)
    assert KEY_A not in str(refused.value)


def test_the_make_plan_listing_shows_the_gateway_but_not_its_keys(deploy):
    listing = _format_run("a10", _gateway_run(deploy))
    assert '● gateway-container  (docker:index/container:Container)\n    in: gateway' in listing
    assert '    networkMode: "host"' in listing and '    uploads: "[secret]"' in listing
    assert KEY_A not in listing and KEY_B not in listing


def test_a_plain_key_beside_a_secret_one_in_the_stack_file_is_refused_by_the_program(reject):
    """The engine hands the whole gateway object over as one secret when any key in it is one;
    the program reads the stack file to tell a key set without --secret apart."""
    path = REPO / "Pulumi.gateway-plain-key.yaml"
    path.write_text(yaml.safe_dump({"config": {
        "ollama-gpu:profile": "a10", "ollama-gpu:gateway": {"enabled": True, "apiKeys": [{"secure": "v1:AAAA"}, KEY_B]},
    }}))
    try:
        message = reject("gateway-plain-key", _enabled(), secret_keys=["gateway"])
    finally:
        path.unlink()
    assert "ollama-gpu:gateway.apiKeys[1] = [secret]: is stored in plain text" in message
    assert KEY_A not in message and KEY_B not in message


def test_an_offline_plan_of_a_stack_file_with_secret_keys_renders_keys_no_one_knows(deploy, tmp_path):
    """make plan cannot decrypt the keys; the Caddyfile it renders must still admit no guessable key."""
    path = tmp_path / "Pulumi.team.yaml"
    path.write_text(yaml.safe_dump({"config": {
        "ollama-gpu:profile": "none", "ollama-gpu:gateway": {"enabled": True, "apiKeys": [{"secure": "v1:AAAA"}]},
    }}))
    values = values_from_stack_file(path)
    assert secret_keys(values) == ["gateway"]
    runs = [deploy("team", values, secret_keys=secret_keys(values)) for _ in range(2)]
    keys = [[line for line in run.by_name("gateway-container").inputs["uploads"]["value"][0]["content"].splitlines()
             if "Bearer " in line] for run in runs]
    assert len(keys[0]) == 1 and keys[0] != keys[1]
    assert "[secret]" not in keys[0][0]
