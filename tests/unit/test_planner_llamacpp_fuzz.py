"""Properties of llama-server's placement that must hold for any budget and settings."""

import re
from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_gpu.planner.catalog import catalog_geometry
from ollama_gpu.planner.llamacpp_placement import (
    CPU, GPU, FitLayers, ServerSettings, fit_overrides, fit_prediction, n_cpu_moe_overrides, override_device,
    place_llama_server, smallest_n_cpu_moe,
)
from ollama_gpu.planner.units import GIB, MIB

FUZZ = settings(max_examples=40, deadline=None)
MODELS = ("qwen3:30b-a3b-thinking-2507-q8_0", "qwen3:30b-a3b-thinking-2507-q4_K_M")
ROLES = ("ffn_up_exps", "ffn_down_exps", "ffn_gate_exps", "ffn_gate_up_exps", "ffn_up_chexps", "ffn_up_shexp",
         "ffn_gate_inp", "ffn_gate_inp_shexp", "ffn_down", "ffn_up", "ffn_norm", "attn_q", "attn_k_norm", "exps")
EXPERT_ROLES = {"ffn_up_exps", "ffn_down_exps", "ffn_gate_exps", "ffn_gate_up_exps", "ffn_up_chexps"}


@lru_cache(maxsize=None)
def geometry(name):
    return catalog_geometry(name)


settings_strategy = st.builds(
    ServerSettings,
    ctx_size=st.sampled_from([2048, 4096, 16384, 32768, 65536]),
    parallel=st.sampled_from([1, 2, 4]),
    ubatch=st.sampled_from([64, 256, 512, 1024]),
    cache_type=st.sampled_from(["f16", "q8_0", "q4_0"]),
)


@FUZZ
@given(n=st.integers(0, 60), block=st.integers(0, 99), role=st.sampled_from(ROLES),
       suffix=st.sampled_from(["weight", "bias"]))
def test_n_cpu_moe_moves_exactly_the_expert_tensors_of_blocks_under_n(n, block, role, suffix):
    name = f"blk.{block}.{role}.{suffix}"
    moved = override_device(name, n_cpu_moe_overrides(n)) == CPU
    assert moved == (block < n and role in EXPERT_ROLES)


@FUZZ
@given(model=st.sampled_from(MODELS), n=st.integers(0, 48))
def test_weights_are_conserved_between_devices(model, n):
    g = geometry(model)
    placement = place_llama_server(g, ServerSettings(ctx_size=4096), overrides=n_cpu_moe_overrides(n))
    gpu_unpadded = sum(t.nbytes for t in placement.tensors if t.device == GPU)
    assert gpu_unpadded + placement.model_host == sum(t.nbytes for t in g.tensors)
    assert placement.model_gpu >= gpu_unpadded
    assert len(placement.cpu_expert_blocks) == n


@FUZZ
@given(model=st.sampled_from(MODELS), server=settings_strategy, n=st.integers(1, 47))
def test_one_more_block_of_host_experts_never_costs_gpu_memory(model, server, n):
    g = geometry(model)
    fewer = place_llama_server(g, server, overrides=n_cpu_moe_overrides(n))
    more = place_llama_server(g, server, overrides=n_cpu_moe_overrides(n + 1))
    assert more.gpu_total <= fewer.gpu_total
    assert more.host_total >= fewer.host_total


@FUZZ
@given(model=st.sampled_from(MODELS), free=st.integers(6 * 1024, 40 * 1024), extra=st.integers(0, 4096),
       margin=st.sampled_from([0, 512 * MIB, GIB]))
def test_the_chosen_n_is_minimal_and_shrinks_with_more_vram(model, free, extra, margin):
    g, server = geometry(model), ServerSettings(ctx_size=32768)
    small = smallest_n_cpu_moe(g, server, free_vram=free * MIB, margin=margin)
    large = smallest_n_cpu_moe(g, server, free_vram=(free + extra) * MIB, margin=margin)
    if small.n_cpu_moe is None:
        return
    assert small.placement.gpu_total <= free * MIB - margin
    if small.n_cpu_moe > 1:
        previous = place_llama_server(g, server, overrides=n_cpu_moe_overrides(small.n_cpu_moe - 1))
        assert previous.gpu_total > free * MIB - margin
    assert large.n_cpu_moe is not None and large.n_cpu_moe <= small.n_cpu_moe


@FUZZ
@given(model=st.sampled_from(MODELS), server=settings_strategy)
def test_more_context_never_takes_experts_back(model, server):
    g = geometry(model)
    bigger = ServerSettings(ctx_size=server.ctx_size * 2, parallel=server.parallel, ubatch=server.ubatch,
                            cache_type=server.cache_type)
    n = smallest_n_cpu_moe(g, server, free_vram=24 * GIB).n_cpu_moe
    m = smallest_n_cpu_moe(g, bigger, free_vram=24 * GIB).n_cpu_moe
    assert n is None or m is None or m >= n


@FUZZ
@given(model=st.sampled_from(MODELS), free=st.integers(8 * 1024, 34 * 1024))
def test_fit_lands_on_the_largest_count_of_full_layers_that_fits(model, free):
    """The fit's result fits, one more full layer would not, and it keeps about as many blocks'
    experts in host RAM as the smallest --n-cpu-moe (the same for q8_0, whose blocks all weigh the
    same; within one for q4_K_M, whose first and last blocks are larger)."""
    g, server = geometry(model), ServerSettings(ctx_size=32768)
    fit = fit_prediction(g, server, free_vram=free * MIB, margin=GIB)
    offload = smallest_n_cpu_moe(g, server, free_vram=free * MIB, margin=GIB)
    if not fit.changed:
        assert fit.placement.gpu_total <= free * MIB - GIB
        return
    if offload.n_cpu_moe is None:
        return
    assert fit.placement.gpu_total <= fit.target
    layers = fit.layers
    if layers.n_part > 1:
        ngl, overrides = fit_overrides(FitLayers(layers.n_layer, layers.n_part - 1), g.block_count)
        assert place_llama_server(g, server, n_gpu_layers=ngl, overrides=overrides).gpu_total > fit.target
    tolerance = 0 if model.endswith("q8_0") else 1
    assert abs(len(fit.cpu_expert_blocks) - offload.n_cpu_moe) <= tolerance


def test_names_in_the_oracle_use_llama_cpp_block_naming():
    assert all(re.fullmatch(r"[a-z_]+", role) for role in ROLES)
