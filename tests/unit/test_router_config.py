"""The router's LiteLLM config: rendered from the template with every value as JSON, so YAML reads
back exactly the structure and values given, and re-checked against each value's grammar so
nothing that could add a key or a line is ever rendered."""

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from ollama_gpu.router_config import Backend, RouterConfig, render_router_config

KEY = "sk-" + "a1" * 20
BACKENDS = (Backend("gpu1", "http://10.0.0.5:11434"), Backend("gpu2", "http://[fd00::6]:11434"))


def _config(**changes) -> RouterConfig:
    return RouterConfig(**{"alias": "qwen3-30b-a3b-2507-q8:ctx32k", "backends": BACKENDS, "master_key": KEY, **changes})


def test_each_host_is_one_deployment_of_the_alias_named_after_the_host():
    config = yaml.safe_load(render_router_config(_config()))
    assert [(d["model_name"], d["litellm_params"]["model"], d["litellm_params"]["api_base"], d["model_info"]["id"])
            for d in config["model_list"]] == [
        ("qwen3-30b-a3b-2507-q8:ctx32k", "ollama_chat/qwen3-30b-a3b-2507-q8:ctx32k", "http://10.0.0.5:11434", "gpu1"),
        ("qwen3-30b-a3b-2507-q8:ctx32k", "ollama_chat/qwen3-30b-a3b-2507-q8:ctx32k", "http://[fd00::6]:11434", "gpu2"),
    ]


def test_routing_retries_health_checks_and_the_key_are_as_configured():
    config = yaml.safe_load(render_router_config(_config(
        routing_strategy="latency-based-routing", num_retries=3, timeout_seconds=90, allowed_fails=1,
        cooldown_seconds=12, health_check_interval_seconds=7)))
    assert config["router_settings"] == {
        "routing_strategy": "latency-based-routing", "num_retries": 3, "retry_after": 0, "timeout": 90,
        "allowed_fails": 1, "cooldown_time": 12,
    }
    assert config["general_settings"] == {
        "master_key": KEY, "disable_spend_logs": True, "background_health_checks": True,
        "health_check_interval": 7, "enable_health_check_routing": True, "health_check_ignore_transient_errors": True,
    }
    assert all(d["litellm_params"]["timeout"] == 90 for d in config["model_list"])


@pytest.mark.parametrize("changes, problem", [
    ({"alias": "a\nb: c"}, "invalid model"),
    ({"alias": 'x" , "y'}, "invalid model"),
    ({"backends": ()}, "no backends"),
    ({"backends": (Backend("gpu1", "http://10.0.0.5:11434/x"),)}, "not NAME at http://IP:PORT"),
    ({"backends": (Backend("gpu1", "http://host.example:11434"),)}, "not NAME at http://IP:PORT"),
    ({"backends": (Backend("Gpu 1", "http://10.0.0.5:11434"),)}, "not NAME at http://IP:PORT"),
    ({"backends": (BACKENDS[0], BACKENDS[0])}, "share a name"),
    ({"master_key": "a1" * 20}, "master key"),
    ({"master_key": "sk-short"}, "master key"),
    ({"master_key": KEY + "\n"}, "master key"),
    ({"routing_strategy": "round-robin"}, "routing strategy"),
    ({"num_retries": -1}, "non-negative"),
    ({"timeout_seconds": True}, "non-negative"),
])
def test_a_value_outside_its_grammar_is_never_rendered(changes, problem):
    with pytest.raises(ValueError, match=problem):
        render_router_config(_config(**changes))


@settings(max_examples=200, deadline=None, database=None)
@given(key_tail=st.text(min_size=32, max_size=40), alias=st.text(min_size=1, max_size=30))
def test_any_text_either_is_refused_or_reads_back_unchanged(key_tail, alias):
    config = _config(master_key="sk-" + key_tail, alias=alias)
    try:
        text = render_router_config(config)
    except ValueError:
        return
    parsed = yaml.safe_load(text)
    assert parsed["general_settings"]["master_key"] == config.master_key
    assert {d["model_name"] for d in parsed["model_list"]} == {alias}
    assert set(parsed) == {"model_list", "router_settings", "litellm_settings", "general_settings"}


def test_a_llama_server_host_is_reached_through_its_openai_compatible_api():
    backends = (Backend("gpu1", "http://10.0.0.5:11434", "llama-server"), Backend("gpu2", "http://10.0.0.6:11434"))
    config = yaml.safe_load(render_router_config(_config(backends=backends)))
    first, second = (d["litellm_params"] for d in config["model_list"])
    assert first == {"model": "openai/qwen3-30b-a3b-2507-q8:ctx32k", "api_base": "http://10.0.0.5:11434/v1",
                     "api_key": "no-key", "timeout": 600}
    assert second == {"model": "ollama_chat/qwen3-30b-a3b-2507-q8:ctx32k", "api_base": "http://10.0.0.6:11434", "timeout": 600}


def test_a_backend_of_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="known engine"):
        render_router_config(_config(backends=(Backend("gpu1", "http://10.0.0.5:11434", "vllm"),)))
