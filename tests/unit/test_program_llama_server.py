"""server.engine: llama-server under the recording mocks: what the program registers, in which
order, with which options, and what a switch between the engines does to the state. Expectations
are written out literally or derived from the settings, never from the program's own helpers."""

import pytest

from ollama_gpu.pins import LLAMA_SERVER_IMAGE
from tests.unit.conftest import (
    CONTAINER,
    REMOTE_COMMAND,
    VOLUME,
    happens_after,
    local_config,
    remote_config,
    script_parameters,
    with_overrides,
)

pytestmark = pytest.mark.usefixtures("ssh_agent")

LLAMA = {"server": {"engine": "llama-server"}}
MODEL_PATH = "/models/models/llama-server/registry.ollama.ai/library/qwen3/30b-a3b-thinking-2507-q8_0.gguf"


def _flags(argv: list[str]) -> dict[str, object]:
    """--flag value pairs, and True for a flag followed by another flag."""
    flags: dict[str, object] = {}
    for index, word in enumerate(argv):
        if word.startswith("--"):
            following = argv[index + 1] if index + 1 < len(argv) else "--"
            flags[word] = True if following.startswith("--") else following
    return flags


def test_a_llama_server_stack_runs_no_ollama_and_no_alias_step(deploy):
    run = deploy("a10", remote_config("a10", LLAMA))
    (container,) = run.of_type(CONTAINER)
    assert container.name == "llama-server-container"
    assert container.inputs["name"] == "llama-server"
    assert not {"ollama", "ollama-container", "ollama-image", "model-pull", "model-alias"} & set(run.names())
    assert run.by_name("llama-server-image").inputs["name"] == LLAMA_SERVER_IMAGE
    assert run.outputs["engine"] == "llama-server"
    assert run.outputs["effective_env"] is None and run.outputs["alias_request"] is None


def test_the_container_serves_the_stack_settings_as_an_argv_list(deploy):
    run = deploy("a10", remote_config("a10", LLAMA))
    argv = run.by_name("llama-server-container").inputs["command"]
    # One list item per word: no shell reads it.
    assert all(isinstance(word, str) for word in argv)
    assert _flags(argv) == {
        "--model": MODEL_PATH,
        "--alias": "qwen3-30b-a3b-2507-q8:ctx32k",
        # a10: numCtx 32768 × numParallel 1.
        "--ctx-size": "32768",
        "--parallel": "1",
        "--flash-attn": "on",
        "--cache-type-k": "q8_0",
        "--cache-type-v": "q8_0",
        "--load-mode": "none",
        # server.env.debug (default on): the buffer-size lines verification reads.
        "--verbosity": "4",
        "--n-predict": "20480",
    }
    assert run.outputs["server_arguments"] == argv


def test_each_slot_gets_the_stack_context(deploy):
    run = deploy("a10", remote_config("a10", {**LLAMA, "server": {"engine": "llama-server", "env": {"numParallel": 3}}}))
    flags = _flags(run.by_name("llama-server-container").inputs["command"])
    assert (flags["--ctx-size"], flags["--parallel"]) == (str(32768 * 3), "3")


def test_placement_fit_keeps_the_gpu_overhead_free_and_ncpumoe_is_explicit(deploy):
    fit = deploy("v100", remote_config("v100", LLAMA))
    # v100: gpuOverhead 512 MiB; the a10's 1 GiB is the build's default margin and is not rendered.
    assert _flags(fit.by_name("llama-server-container").inputs["command"])["--fit-target"] == "512"
    explicit = deploy("a10", remote_config("a10", {**LLAMA, "llamaServer": {"placement": "nCpuMoe", "nCpuMoe": 18}}))
    flags = _flags(explicit.by_name("llama-server-container").inputs["command"])
    assert (flags["--fit"], flags["--n-cpu-moe"]) == ("off", "18") and "--fit-target" not in flags


def test_a_cpu_stack_renders_no_placement(deploy):
    run = deploy("local", local_config(LLAMA))
    flags = _flags(run.by_name("llama-server-container").inputs["command"])
    assert not {"--fit", "--fit-target", "--n-cpu-moe"} & set(flags)
    assert run.by_name("llama-server-container").inputs.get("gpus") is None


def test_sampling_parameters_become_server_defaults_unless_they_are_the_builds(deploy):
    parameters = {"temperature": 0.6, "topK": 20, "topP": 0.95, "numBatch": 1024, "seed": 42}
    run = deploy("a10", remote_config("a10", {**LLAMA, "model": {"parameters": parameters}}))
    flags = _flags(run.by_name("llama-server-container").inputs["command"])
    assert (flags["--temp"], flags["--top-k"], flags["--seed"]) == ("0.6", "20", "42")
    assert (flags["--batch-size"], flags["--ubatch-size"]) == ("1024", "1024")
    # 0.95 is llama-server's own top-p default: the flag would change nothing.
    assert "--top-p" not in flags


def test_the_models_volume_is_mounted_read_only_and_kept(deploy):
    run = deploy("a10", remote_config("a10", LLAMA))
    (volume,) = run.of_type(VOLUME)
    assert volume.retain_on_delete and volume.inputs["name"] == "ollama"
    (mount,) = run.by_name("llama-server-container").inputs["volumes"]
    assert mount == {"volumeName": "ollama", "containerPath": "/models", "readOnly": True}


def test_the_container_is_loopback_bound_rotated_restarted_and_health_checked(deploy):
    container = deploy("a10", remote_config("a10", LLAMA)).by_name("llama-server-container")
    inputs = container.inputs
    assert inputs["ports"] == [{"internal": 8080, "external": 11434, "ip": "127.0.0.1"}]
    assert inputs["logOpts"] == {"max-size": "20m", "max-file": "5"} and inputs["logDriver"] == "json-file"
    assert inputs["restart"] == "unless-stopped" and inputs["init"] is True and inputs["wait"] is True
    check = inputs["healthcheck"]
    assert check["tests"][:3] == ["CMD", "bash", "-c"]
    assert script_parameters(check["tests"][3]) == {"PROBE_TIMEOUT_SECONDS": "5", "FAILURES_BEFORE_RESTART": "3"}
    assert "/slots" in check["tests"][3]
    # Loading the model is the container's start: the health check's grace covers the whole wait
    # (300 s), spelled as Docker reads it back, or every preview would show a change.
    assert int(inputs["waitTimeout"]) == 300 and check["startPeriod"] == "5m0s"
    assert container.delete_before_replace


def test_the_model_file_is_fetched_into_the_volume_before_the_server_starts(deploy):
    run = deploy("a10", remote_config("a10", LLAMA))
    fetch = run.by_name("model-file-fetch")
    assert fetch.type == REMOTE_COMMAND
    assert script_parameters(fetch.inputs["create"]) == {
        "VOLUME": "ollama",
        "REGISTRY_URL": "https://registry.ollama.ai",
        "REPOSITORY": "library/qwen3",
        "TAG": "30b-a3b-thinking-2507-q8_0",
        "MANIFEST_PATH": "manifests/registry.ollama.ai/library/qwen3/30b-a3b-thinking-2507-q8_0",
        "LINK_PATH": "llama-server/registry.ollama.ai/library/qwen3/30b-a3b-thinking-2507-q8_0.gguf",
        "TIMEOUT_SECONDS": "7200",
        "PROGRESS_SECONDS": "15",
    }
    # No delete: the model stays in the volume for a recreated stack or the other engine.
    assert not fetch.inputs.get("delete")
    assert fetch.inputs["triggers"] == ["ollama"]
    assert happens_after(run, "model-file-fetch", "ollama-models")
    assert happens_after(run, "llama-server-container", "model-file-fetch")
    assert happens_after(run, "llama-server-report", "llama-server-container")


def test_a_configured_registry_is_where_the_model_file_comes_from(deploy):
    run = deploy("a10", remote_config("a10", {**LLAMA, "model": {"registry": "http://10.0.0.5:5000"}}))
    parameters = script_parameters(run.by_name("model-file-fetch").inputs["create"])
    assert parameters["REGISTRY_URL"] == "http://10.0.0.5:5000"
    assert parameters["MANIFEST_PATH"].startswith("manifests/10.0.0.5:5000/library/qwen3/")


def test_the_gpu_check_runs_the_image_the_server_will_run(deploy):
    run = deploy("a10", remote_config("a10", LLAMA))
    assert script_parameters(run.by_name("host-gpu-check").inputs["create"])["IMAGE"] == LLAMA_SERVER_IMAGE


def test_each_engines_container_takes_over_the_others_so_a_switch_is_one_replacement(deploy):
    llama = deploy("a10", remote_config("a10", LLAMA)).by_name("llama-server-container")
    ollama = deploy("a10", remote_config("a10")).by_name("ollama-container")
    assert llama.aliases == [{"name": "ollama-container", "parent": "urn:pulumi:a10::ollama-gpu::ollama-gpu:index:OllamaServer::ollama"}]
    assert ollama.aliases == [{"name": "llama-server-container",
                               "parent": "urn:pulumi:a10::ollama-gpu::ollama-gpu:index:LlamaServer::llama-server"}]
    assert llama.delete_before_replace and ollama.delete_before_replace


def test_the_volume_is_the_same_resource_under_either_engine(deploy):
    urns = {deploy("a10", remote_config("a10", overrides)).by_name("ollama-models").urn for overrides in (LLAMA, {})}
    # A child of the stack itself (the mock engine spells the stack's type into the URN).
    assert len(urns) == 1 and urns.pop().endswith("::pulumi:pulumi:Stack$docker:index/volume:Volume::ollama-models")
    volume = deploy("a10", remote_config("a10")).by_name("ollama-models")
    # Where it lived before the second engine: a deployed stack keeps its volume resource.
    assert volume.aliases == [{"name": "", "parent": "urn:pulumi:a10::ollama-gpu::ollama-gpu:index:OllamaServer::ollama"}]


def test_fail_on_mismatch_makes_the_report_step_hold_the_server_to_the_stack(deploy):
    config = remote_config("a10", {**LLAMA, "verification": {"failOnMismatch": True},
                                   "model": {"parameters": {"numCtx": 8192, "numPredict": 4096}}})
    run = deploy("a10", config)
    parameters = script_parameters(run.by_name("llama-server-report").inputs["create"])
    assert (parameters["EXPECTED_SLOT_CONTEXT"], parameters["EXPECTED_KV_TYPE"]) == ("8192", "q8_0")  # the a10 profile's KV type


def test_verification_reads_the_report_step(deploy):
    run = deploy("a10", remote_config("a10", LLAMA))
    assert script_parameters(run.by_name("llama-server-report").inputs["create"]) == {
        "API_URL": "http://127.0.0.1:11434", "CONTAINER_NAME": "llama-server", "EXPECTED_SLOT_CONTEXT": "",
        "EXPECTED_KV_TYPE": "",
    }
    assert run.by_name("llama-server-report").inputs["triggers"] == [run.by_name("llama-server-container").name + "-id"]
    assert run.outputs["verification"] == {"status": "not run yet"}
    # The planner places the model as llama-server would (llama-plan's planner).
    assert run.outputs["plan"]["engine"] == "llama-server" and run.outputs["plan_table"]


def test_the_plan_follows_the_stacks_placement(deploy):
    explicit = deploy("a10", remote_config("a10", {**LLAMA, "llamaServer": {"placement": "nCpuMoe", "nCpuMoe": 30}}))
    assert explicit.outputs["plan"]["llama_server"]["n_cpu_moe"] == 30
    assert not explicit.outputs["plan"]["llama_server"]["n_cpu_moe_chosen_by_planner"]
    fit = deploy("a10", remote_config("a10", LLAMA))
    assert fit.outputs["plan"]["llama_server"]["n_cpu_moe_chosen_by_planner"]


@pytest.mark.parametrize("stack, config", [("a10", remote_config("a10", LLAMA)), ("a10", remote_config("a10"))], ids=["llama-server", "ollama"])
def test_health_check_durations_are_written_as_docker_reads_them_back(deploy, stack, config):
    """Docker returns a health check's durations in Go's spelling; "90s" would come back as "1m30s"
    and show as a change in every preview (the e2e's --expect-no-changes found it)."""
    slow = with_overrides(config, {"server": {"selfHeal": {"probeIntervalSeconds": 90, "probeTimeoutSeconds": 60},
                                              "startupTimeoutSeconds": 3600}})
    (container,) = deploy(stack, slow).of_type(CONTAINER)
    check = container.inputs["healthcheck"]
    assert check["interval"] == "1m30s"
    assert check["timeout"] in ("1m5s", "2m5s")
    assert check["startPeriod"] in ("30s", "1h0m0s")
