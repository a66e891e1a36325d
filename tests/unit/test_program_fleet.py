"""A fleet stack as the program registers it (mock-backed, through ollama_gpu.offline): each host
gets host prep, server, alias and verification under its own name prefix and its own docker
provider, its Ollama published on loopback and its private address only; one LiteLLM router on
the named host with the rendered config as a secret upload, depending on every alias; per-host
plans and a fleet plan table; one-host stacks keep exactly the resources they had."""

import pytest
import yaml

from ollama_gpu.config_loader import load_settings
from ollama_gpu.errors import ConfigError
from tests.unit.conftest import CONTAINER, HOST_KEY, STACKS, is_secret, ollama_stack_values, stack_values, with_overrides

pytestmark = pytest.mark.usefixtures("ssh_agent")

MASTER_KEY = "sk-" + "5e" * 24
ROUTER_TYPE = "ollama-gpu:index:Router"
SINGLE_HOST_PREFIXES = ("host-", "ollama-", "model-", "verification", "docker", "gateway")


def host(name: str, address: str, private: str, **extra) -> dict:
    return {"name": name, "address": address, "user": "ubuntu", "hostKey": HOST_KEY, "privateAddress": private, **extra}


def fleet_config(router: dict | None = None, hosts: list | None = None, **overrides) -> dict:
    config = {
        "profile": "a10",
        "hardware": {"hostRam": "116GB"},
        "hosts": hosts or [host("gpu1", "203.0.113.10", "10.0.0.5"), host("gpu2", "203.0.113.11", "10.0.0.6", profile="v100")],
        "router": {"enabled": True, "host": "gpu2", "masterKey": MASTER_KEY, **(router or {})},
    }
    return with_overrides(config, overrides)


def _run(deploy, config=None):
    return deploy("a10", config or fleet_config(), secret_keys=["router"])


def test_each_host_gets_the_whole_recipe_under_its_own_name(deploy):
    run = _run(deploy)
    for name in ("gpu1", "gpu2"):
        for resource in ("host-docker-engine", "host-nvidia-toolkit", "ollama-container", "ollama-models",
                         "model-pull", "model-alias"):
            assert f"{name}-{resource}" in run.names()
        assert f"{name}-docker" in run.names()
    assert not [n for n in run.names() if n.startswith(SINGLE_HOST_PREFIXES)], "no unprefixed single-host resource"


def test_each_host_is_reached_through_its_own_connection_and_engine(deploy):
    run = _run(deploy)
    for name, address in (("gpu1", "203.0.113.10"), ("gpu2", "203.0.113.11")):
        assert run.by_name(f"{name}-model-pull").inputs["connection"]["value"]["host"] == address
        container = run.by_name(f"{name}-ollama-container")
        assert run.providers[container.urn].endswith(f"::{name}-docker")


def test_ollama_is_published_on_the_private_address_only_where_the_host_scripts_reach_it_too(deploy):
    run = _run(deploy)
    container = run.by_name("gpu1-ollama-container").inputs
    assert [(port["ip"], port["external"]) for port in container["ports"]] == [("10.0.0.5", 11434)]
    assert "API_URL=http://10.0.0.5:11434 " in run.by_name("gpu1-model-alias").inputs["create"]
    # The policy pack admits the private-address port of a container so labelled, and no other.
    assert container["labels"] == [{"label": "ollama-gpu.router-backend", "value": "true"}]


def test_one_router_on_the_named_host_with_its_config_as_a_secret_upload(deploy):
    run = _run(deploy)
    (component,) = run.of_type(ROUTER_TYPE)
    assert sorted(r.name for r in run.resources if r.parent == component.urn) == ["router-container", "router-image"]
    router = run.by_name("router-container")
    assert run.providers[router.urn].endswith("::gpu2-docker")
    assert router.inputs["networkMode"] == "host"
    assert router.inputs["image"].startswith("sha256:offline-ghcr.io/berriai/litellm:main-v")
    assert router.inputs["command"] == ["--config", "/app/config.yaml", "--host", "127.0.0.1", "--port", "4000", "--num_workers", "1"]
    assert is_secret(router.inputs["uploads"])
    (upload,) = router.inputs["uploads"]["value"]
    config = yaml.safe_load(upload["content"])
    alias = run.outputs["alias"]
    assert config["model_list"] == [
        {"model_name": alias, "litellm_params": {"model": f"ollama_chat/{alias}", "api_base": api_base, "timeout": 600},
         "model_info": {"id": name, "health_check_timeout": 10}}
        for name, api_base in (("gpu1", "http://10.0.0.5:11434"), ("gpu2", "http://10.0.0.6:11434"))
    ]
    assert config["general_settings"]["master_key"] == MASTER_KEY
    assert config["router_settings"]["routing_strategy"] == "least-busy"
    assert router.delete_before_replace is True


def test_the_router_starts_after_every_alias_is_loaded(deploy):
    run = _run(deploy)
    router = run.by_name("router-container")
    for name in ("gpu1", "gpu2"):
        assert run.by_name(f"{name}-model-alias").urn in router.depends_on


def test_the_master_key_is_in_no_plain_output_or_input(deploy):
    run = _run(deploy)
    assert MASTER_KEY not in str(run.outputs)
    for resource in run.resources:
        if resource.name != "router-container":
            assert MASTER_KEY not in str(resource.inputs), resource.name


def test_plans_and_verification_are_per_host_and_the_table_adds_the_fleet(deploy):
    run = _run(deploy)
    assert set(run.outputs["plan"]) == {"gpu1", "gpu2"}
    assert run.outputs["plan"]["gpu1"]["settings"]["gpu_free_vram"] != run.outputs["plan"]["gpu2"]["settings"]["gpu_free_vram"]
    table = run.outputs["plan_table"]
    assert "== gpu1" in table and "== gpu2" in table and "fleet (2/2 planned)" in table
    speeds = [run.outputs["plan"][name]["speed"]["decode_tokens_per_s_bound"] for name in ("gpu1", "gpu2")]
    fleet_line = next(line for line in table.splitlines() if line.startswith("fleet"))
    assert float(fleet_line.split()[-1]) == pytest.approx(sum(speeds), abs=0.11)
    assert set(run.outputs["verification"]) == {"gpu1", "gpu2"}
    assert run.outputs["endpoint"] == "http://127.0.0.1:4000/v1"
    assert run.outputs["tunnel"] == "ssh -N -o ExitOnForwardFailure=yes -L 4000:127.0.0.1:4000 -p 22 -- ubuntu@203.0.113.11"


def test_a_llama_server_fleet_routes_to_each_hosts_openai_api_on_its_private_address(deploy):
    run = _run(deploy, fleet_config(server={"engine": "llama-server"}))
    alias = run.outputs["alias"]
    router = run.by_name("router-container")
    for name, private in (("gpu1", "10.0.0.5"), ("gpu2", "10.0.0.6")):
        container = run.by_name(f"{name}-llama-server-container").inputs
        assert [(port["ip"], port["external"]) for port in container["ports"]] == [(private, 11434)]
        assert container["labels"] == [{"label": "ollama-gpu.router-backend", "value": "true"}]
        assert f"{name}-model-file" in run.names() and f"{name}-ollama-container" not in run.names()
        # The router starts once each host's server has loaded the model and reported it.
        assert run.by_name(f"{name}-llama-server-report").urn in router.depends_on
    config = yaml.safe_load(router.inputs["uploads"]["value"][0]["content"])
    assert [d["litellm_params"]["model"] for d in config["model_list"]] == [f"openai/{alias}"] * 2
    assert [d["litellm_params"]["api_base"] for d in config["model_list"]] == [
        "http://10.0.0.5:11434/v1", "http://10.0.0.6:11434/v1"]
    assert run.outputs["engine"] == "llama-server"
    assert "fleet (2/2 planned)" in run.outputs["plan_table"]


TEAM_KEY = "t" * 20 + "eam-key-0123456789"


def test_a_gateway_fronts_the_router_on_its_host_with_team_keys_in_place_of_the_master_key(deploy):
    run = deploy("a10", fleet_config(gateway={"enabled": True, "apiKeys": [TEAM_KEY]}), secret_keys=["router", "gateway"])
    gateway = run.by_name("gateway-container")
    assert run.providers[gateway.urn].endswith("::gpu2-docker")
    assert run.by_name("router-container").urn in gateway.depends_on
    assert is_secret(gateway.inputs["uploads"])
    caddyfile = gateway.inputs["uploads"]["value"][0]["content"]
    assert "reverse_proxy http://127.0.0.1:4000 {" in caddyfile
    assert f'header_up Authorization "Bearer {MASTER_KEY}"' in caddyfile
    assert f'header Authorization "Bearer {TEAM_KEY}"' in caddyfile
    assert "@not_served not path /v1/chat/completions /v1/completions /v1/embeddings /v1/models\n" in caddyfile
    # The CA root is read on the router host, over its own connection.
    assert run.by_name("gateway-ca-root").inputs["connection"]["value"]["host"] == "203.0.113.11"
    assert run.outputs["gateway_url"] == "https://203.0.113.11:8443"
    for resource in run.resources:
        if resource.name not in ("router-container", "gateway-container"):
            assert MASTER_KEY not in str(resource.inputs) and TEAM_KEY not in str(resource.inputs), resource.name
    assert MASTER_KEY not in str(run.outputs) and TEAM_KEY not in str(run.outputs)


def test_a_fleet_without_router_serves_each_host_alone(deploy):
    run = _run(deploy, fleet_config(router={"enabled": False}))
    assert not run.of_type(ROUTER_TYPE)
    assert "gpu1-model-alias" in run.names() and run.outputs["endpoint"] == ""


def test_a_cpu_host_in_the_fleet_gets_no_nvidia_setup(deploy):
    hosts = [host("gpu1", "203.0.113.10", "10.0.0.5"), host("cpu1", "203.0.113.12", "10.0.0.7", profile="none")]
    run = _run(deploy, fleet_config(hosts=hosts, router={"host": "cpu1"}))
    assert "gpu1-host-nvidia-toolkit" in run.names() and "cpu1-host-docker-engine" in run.names()
    assert not [n for n in run.names() if n.startswith("cpu1-host-nvidia")]
    assert "gpus" not in run.by_name("cpu1-ollama-container").inputs


def test_removing_a_host_removes_only_its_resources_and_its_backend(deploy):
    both = _run(deploy)
    one = _run(deploy, fleet_config(hosts=[host("gpu1", "203.0.113.10", "10.0.0.5")], router={"host": "gpu1"}))
    assert {n for n in both.names() if not n.startswith(("gpu2", "router"))} == {n for n in one.names() if not n.startswith("router")}
    (upload,) = one.by_name("router-container").inputs["uploads"]["value"]
    assert [d["model_info"]["id"] for d in yaml.safe_load(upload["content"])["model_list"]] == ["gpu1"]


@pytest.mark.parametrize("stack", STACKS)
def test_single_host_stacks_register_no_fleet_resource(stack, deploy):
    run = deploy(stack, ollama_stack_values(stack))
    assert not run.of_type(ROUTER_TYPE)
    assert not [n for n in run.names() if n.startswith(("gpu", "router"))]
    container = run.by_name("ollama-container").inputs
    assert [port["ip"] for port in container["ports"]] == ["127.0.0.1"]
    assert "ollama-gpu.router-backend" not in str(container.get("labels"))


@pytest.mark.parametrize("overrides, key, fix", [
    ({"host": {"address": "203.0.113.9", "hostKey": HOST_KEY}}, "hosts", "remove host"),
    ({"hosts": [host("gpu1", "203.0.113.10", "10.0.0.5"), host("gpu1", "203.0.113.11", "10.0.0.6")]}, "hosts[1].name", "own name"),
    ({"hosts": [host("gpu1", "203.0.113.10", "10.0.0.5"), host("gpu2", "203.0.113.10", "10.0.0.6")]}, "hosts[1].address", "each VM once"),
    ({"hosts": [host("gpu1", "203.0.113.10", "203.0.113.10")]}, "hosts[0].privateAddress", "10.0.0.0/8"),
    ({"hosts": [host("gpu1", "203.0.113.10", "0.0.0.0")]}, "hosts[0].privateAddress", "10.0.0.0/8"),
    ({"hosts": [host("GPU 1", "203.0.113.10", "10.0.0.5")]}, "hosts[0].name", "gpu1"),
    ({"router": {"host": "gpu9"}}, "router.host", "gpu1, gpu2"),
    ({"router": {"bindAddress": "0.0.0.0"}}, "router.bindAddress", "127.0.0.1"),
    ({"router": {"bindAddress": "93.184.216.34"}}, "router.bindAddress", "HTTPS proxy"),
    ({"router": {"port": 11434}}, "router.port", "4000"),
    ({"router": {"routingStrategy": "round-robin"}}, "router.routingStrategy", "router.routingStrategy"),
    ({"router": {"image": "ghcr.io/berriai/litellm:main-latest"}}, "router.image", "version tag"),
    ({"router": {"numRetries": -1}}, "router.numRetries", "router.numRetries"),
    ({"gateway": {"enabled": True, "apiKeys": ["k" * 40]}, "router": {"enabled": False}}, "gateway.enabled", "router.enabled: true"),
    ({"gateway": {"enabled": True, "apiKeys": ["k" * 40]}, "router": {"bindAddress": "10.0.0.6"}}, "router.bindAddress", "127.0.0.1"),
    ({"gateway": {"enabled": True, "apiKeys": ["k" * 40], "port": 4000}}, "gateway.port", "8443"),
], ids=["host-and-hosts", "same-name", "same-address", "public-private-address", "unspecified-private-address",
        "bad-name", "unknown-router-host", "router-on-all-addresses", "router-on-public-address", "router-port-clash",
        "unknown-strategy", "unpinned-image", "negative-retries", "gateway-without-router", "router-past-the-gateway",
        "gateway-port-clash"])
def test_a_bad_fleet_is_refused_with_the_key_and_the_fix(overrides, key, fix, reject):
    config = with_overrides(fleet_config(), {k: v for k, v in overrides.items() if k not in ("hosts", "host")})
    if "hosts" in overrides:
        config["hosts"] = overrides["hosts"]
        config["router"]["host"] = overrides["hosts"][0]["name"] if overrides["hosts"][0]["name"] != "GPU 1" else None
    if "host" in overrides:
        config["host"] = overrides["host"]
    message = reject("a10", config, secret_keys=["router", "gateway"])
    lines = [line for line in message.splitlines() if f"ollama-gpu:{key} = " in line]
    assert len(lines) == 1, message
    assert "Fix: " in lines[0] and fix in lines[0], lines[0]
    assert MASTER_KEY not in message


def test_the_router_needs_hosts_and_a_master_key(reject):
    message = reject("local", {"profile": "none", "router": {"enabled": True, "masterKey": MASTER_KEY}}, secret_keys=["router"])
    assert "ollama-gpu:router.enabled = True: needs hosts" in message
    config = fleet_config()
    del config["router"]["masterKey"]
    message = reject("a10", config, secret_keys=["router"])
    assert "ollama-gpu:router.masterKey = (not set): is missing" in message


@pytest.mark.parametrize("key", ["sk-short", "5e" * 24, "sk-" + "x" * 30 + " y", "sk-" + "é" * 40])
def test_a_malformed_master_key_is_refused_without_showing_it(key, reject):
    message = reject("a10", fleet_config(router={"masterKey": key}), secret_keys=["router"])
    assert "ollama-gpu:router.masterKey = (an API key, not shown): is not sk- followed by" in message
    assert key not in message


def test_a_plain_text_master_key_is_refused(reject):
    message = reject("a10", fleet_config(), secret_keys=[])
    assert "ollama-gpu:router.masterKey = [secret]: is stored in plain text" in message
    assert MASTER_KEY not in message


def test_a_fleet_without_any_ssh_identity_is_refused(monkeypatch):
    with pytest.raises(ConfigError, match="sshPrivateKey = \\(not set\\): is missing"):
        load_settings("a10", fleet_config(), agent_socket=None)
