"""Compute-graph reservation per device, as Ollama 0.24.0's Go engine measures it.

How the engine gets the number: runner/ollamarunner/runner.go (reserveWorstCaseGraph) builds the
forward graph twice, for a full prompt batch (num_batch tokens, every KV cell visible) and for one
token, and ml/backend/ggml/ggml.go (Context.Reserve) asks ggml's scheduler what it would allocate
on each backend (ggml_backend_sched_get_attempted_buffer_size: the graph allocator's high-water
mark plus, for CUDA, the backend's scratch pools). Buffers only grow, so the larger graph wins.

What decides the size (read from the vendored ggml, then measured):
- Op offload. ggml_backend_sched_new_ext is called with op_offload=true (ggml.go New) and the
  prompt reserve sets the batch size to num_batch, so for batches of 32 tokens or more every matmul
  whose weights live in host RAM is run on the GPU instead (ggml-backend.cpp,
  ggml_backend_sched_backend_id_from_cur; ggml-cuda.cu, ggml_backend_cuda_device_offload_op), its
  weight tensor copied into the GPU's compute buffer first. Each weight starts a new split
  (ggml_backend_sched_split_graph, need_new_split), so only one such copy is live at a time: the
  GPU needs room for the largest tensor of any block left in host RAM (204 MiB for a Q8_0
  ffn_*_exps of Qwen3-30B-A3B), part of it in space the allocator freed earlier (_staging_bytes).
  The CPU then only runs the token-embedding lookup (GET_ROWS is never offloaded):
  num_batch x embedding_length float32.
- The KQ mask. The causal cache builds it on the host as float32 [cells, batch]
  (kvcache/causal.go, buildMask); with flash attention it is cast to f16. A GPU gets the f32 mask
  as a copied input before the cast.
- With op offload, the attention of a host-resident block: flash attention runs on the GPU on
  copies of the block's whole K and V cache (_host_attention_phase). Qwen3's caches are small beside
  its staged weights; a model with a large cache per layer (gemma3-27b's global layers: 256 MiB at
  32K) makes this the largest phase of a hybrid layout.
- Activations of the biggest phase, the MoE FFN: routed gate/up/SwiGLU outputs
  (expert_ff x used experts per token), the down projection (embedding x used experts per token)
  and a few hidden-state vectors (qwen3 model.go, sparse.Forward). Without flash attention the
  attention scores [cells, batch, heads] float32 dominate instead, and on CUDA the V x KQ product
  also converts them to f16.

Two engine behaviours are modelled, chosen by ``op_offload``:
- off (the default): host-resident blocks are computed on the CPU. This reproduces the operator's
  A10 log in field-notes.md exactly (CPU graph 84.0 MiB = the FFN activations of a 512-token batch
  plus that batch's token embeddings; GPU graph 190 MiB = the f16 KQ mask, the same activations and
  the CUDA scratch below), which is the reference this project's planner is checked against.
- on: what a 0.24.0 CUDA build was measured to do (below). It moves the host blocks' prompt-batch
  matmuls to the GPU, so the CPU graph shrinks to the embeddings and the GPU graph grows by the
  staged copy of the largest host-resident weight tensor. Only graph sizes differ; layers, weights
  and KV do not for the cases measured. ``scripts/plan --op-offload on`` predicts it.

Measured with the real 0.24.0 server (zero-weight GGUFs with this catalog's tensor shapes, 8
blocks), on an H100 with CUDA 13 and on a CPU-only build. The formulas below reproduce those
measurements: CPU-only within 5% from 2K to 64K context (num_batch 128 to 1024) except one shape
variant at 16%; full GPU offload exact at 32K and 64K, within 23% at 4K-16K; hybrid layouts exact
at 32K and within 18% at num_batch <= 512 (24% at num_batch 1024). tests/unit/test_planner_graph.py
pins each point. Against the H200 lab runs (lab/results, full size models, 32K context) the op
offload GPU graph is within 6.2% for every Qwen3 run: hybrid q8_0 exact, q4_K_M -3%, num_batch
2048 +6.1%, q8_0 cache +6.2%, dense Qwen3-32B +6.2% hybrid and +4.4% fully resident
(tests/unit/test_gpulab_results.py). Gemma3-27B q4_K_M: fully resident +5.6%, hybrids -7.1%
(the host attention phase; the FFN-phase staging formula alone was -15.6% and one block too many).
The two CUDA constants were measured on sm_90; an A10 (sm_86) or V100 (sm_70) picks other kernels
and may differ by some tens of MiB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.units import MIB

F32 = 4
F16 = 2

# CUDA backend scratch beyond the graph allocator (mmq quantized activations, flash-attention
# fix-up buffers, pool rounding), fitted to the H100 measurements: the FFN-phase figure with the
# activation term, the attention-phase figure with the float32 scores when flash attention is off.
CUDA_SCRATCH_FFN_PHASE = 78 * MIB
CUDA_SCRATCH_ATTENTION_PHASE = 30 * MIB

# ggml-backend.cpp: a weight in host RAM is offloaded only for batches of at least this many tokens.
OP_OFFLOAD_MIN_BATCH = 32

# With op offload, what a layout with host-resident blocks adds to the GPU graph besides the staged
# weight (see _staging_bytes). Fitted, not derived: 64 MiB makes the Qwen3-30B-A3B q8_0 hybrid at
# num_batch 512 and 32K context exact (450 MiB in the H200 lab runs a10, v100, 14GiB and 8GiB of
# lab/results/qwen3-30b-a3b-q8_0.lease-a.json, and on the H100); the 8GiB run's layer count needs
# at least 446 MiB. The other lab runs then land within 6.2% (q4_K_M, num_batch 2048, q8_0 cache,
# dense Qwen3-32B).
HOST_BLOCKS_SPLIT_OVERHEAD = 64 * MIB


@dataclass(frozen=True)
class GraphReserve:
    """Compute-graph bytes the engine reports per device ("compute graph" log lines)."""

    gpu: int
    cpu: int


def activation_bytes(geometry: ModelGeometry, batch: int) -> int:
    """High-water mark of the FFN phase's float32 activations for one batch.

    MoE: down-projection output (E x K), gate, up and SwiGLU outputs (3 x F x K) and three
    hidden-state vectors (3 x E) per token, E = embedding, F = expert FFN width, K = used experts.
    80 MiB for Qwen3-30B-A3B at 512 tokens. Dense models use the same count with K = 1 and F the
    FFN width, plus one more hidden vector for the down projection output (not measured).
    """
    e = geometry.embedding_length
    if geometry.is_moe:
        per_token = e * geometry.expert_used_count + 3 * geometry.expert_ff_length * geometry.expert_used_count + 3 * e
    else:
        per_token = 3 * geometry.feed_forward_length + 4 * e
    return F32 * batch * per_token


def _staging_bytes(geometry: ModelGeometry, host_blocks: range, activations: int) -> int:
    """GPU graph bytes that staging host-resident weights adds to the fully resident FFN phase.

    From the source: the scheduler copies each host weight into the GPU's compute buffer at the
    start of its own split (ggml_backend_sched_split_graph adds the copy as a node right before the
    split), and ggml-alloc frees it after its only consumer, so one weight is live at a time and the
    largest one sets the size. ggml-alloc places it best-fit in space freed earlier in the graph,
    so only what does not fit there grows the buffer. A host block also copies other inputs, its
    small weights among them (its K/V cache copies belong to the attention phase and are freed
    before its FFN runs: _host_attention_phase). Fitted, not derived: how much freed space the copy
    finds, half the FFN-phase activations (the q8_0 MoE expert copy grows the buffer by 164 of its 204 MiB at num_batch 512,
    by 44 MiB at 2048; a dense Qwen3-32B's 102 MiB ffn_down by 7 MiB), and
    HOST_BLOCKS_SPLIT_OVERHEAD for the other inputs and fragmentation. The unfitted sum (largest
    tensor on top, nothing else) was 5% low for the q8_0 MoE at num_batch 512, one block too many
    at 8 GiB, and 14-19% high for num_batch 2048 and the dense model.
    """
    if not host_blocks:
        return 0
    return staged_weight_bytes(max(geometry.block_largest_tensor_bytes[i] for i in host_blocks), activations)


def staged_weight_bytes(largest_host_weight: int, activations: int) -> int:
    """What staging host-resident weights of ``largest_host_weight`` bytes at most adds to a GPU
    compute buffer whose FFN phase holds ``activations``: _staging_bytes's rule, shared with
    llamacpp_placement.py (the same ggml scheduler and allocator stage llama-server's CPU experts)."""
    return max(0, largest_host_weight - activations // 2) + HOST_BLOCKS_SPLIT_OVERHEAD


def _host_attention_phase(geometry: ModelGeometry, host_blocks: range, block_cache_bytes: Sequence[int] | None,
                          *, batch: int, cells: int, kv_cache_quantized: bool) -> int:
    """GPU graph bytes while a host-resident block's flash attention runs on the GPU (op offload).

    Derived from the source; the one constant, CUDA_SCRATCH_ATTENTION_PHASE, was fitted to the
    attention phase without flash attention and is assumed here. The attention op reads
    the block's K and V cache views, which live in host RAM, so ggml_backend_sched_split_graph copies
    both into the GPU's compute buffer as inputs of that split (ggml_backend_sched_backend_id_from_cur
    puts the op on the GPU: the cache is not a weight buffer, so its neighbours decide). The prompt
    reserve sees every cell (kvcache/causal.go), so each copy is the block's whole cache, and both
    are live at once. Around them: the float32 mask input and its f16 cast (live from the first
    block to the last), the query, the attention output and two hidden vectors, and the scratch of
    CUDA_SCRATCH_ATTENTION_PHASE. Qwen3's caches are small beside its staged expert or FFN weight;
    gemma3-27b's global layers (every 6th: 16 KV heads x 128 x 32768 cells, K+V 256 MiB in f16)
    make this phase the largest: 419 MiB against the 451 MiB measured (lab gemma3 12GiB and 6GiB).
    Those two runs cannot tell this from the other reading of them, an FFN staging copy that finds
    no freed space in gemma3 (about 450-465 MiB); the phases part where the host blocks hold only
    sliding-window caches (blocks 0-4) or the context is short: at 32K with 58 blocks on the GPU this
    predicts 380 MiB, at 8K with 35 blocks 332 MiB, the other reading about 450 and 415.
    """
    if block_cache_bytes is None:
        block_cache_bytes = [2 * F16 * geometry.head_dim * geometry.head_count_kv * cells] * geometry.block_count
    kv_copy = max(block_cache_bytes[i] for i in host_blocks)
    if kv_cache_quantized:
        # CUDA's flash attention converts the copied quantized K and V to f16 in its pool.
        kv_copy += 2 * F16 * geometry.head_dim * geometry.head_count_kv * cells
    around = F32 * batch * (2 * geometry.head_count * geometry.head_dim + 2 * geometry.embedding_length)
    masks = (F32 + F16) * cells * batch
    return masks + kv_copy + around + CUDA_SCRATCH_ATTENTION_PHASE


def graph_reserve(
    geometry: ModelGeometry,
    *,
    batch: int,
    kv_cells: int,
    flash_attention: bool,
    kv_cache_quantized: bool,
    gpu_blocks: int,
    output_on_gpu: bool,
    op_offload: bool = False,
    block_cache_bytes: Sequence[int] | None = None,
) -> GraphReserve:
    """Graph bytes for a layout with the last ``gpu_blocks`` blocks (and maybe the output) on GPU.

    ``batch`` is the effective num_batch (already capped at num_ctx), ``kv_cells`` the padded KV
    size (the largest layer's), ``kv_cache_quantized`` whether the cache that is actually allocated
    is q8_0/q4_0, ``block_cache_bytes`` each block's K+V cache bytes as allocated (sliding-window
    layers hold fewer cells); without it every block caches ``kv_cells`` cells in f16.
    """
    cells, heads = kv_cells, geometry.head_count
    activations = activation_bytes(geometry, batch)
    if flash_attention:
        # The f16 mask stays live from the first block to the last; the FFN phase sits on top.
        cpu_only = F16 * cells * batch + activations
    else:
        # float32 scores plus query, attention output and two hidden vectors, or the FFN phase.
        scores = F32 * cells * batch * heads
        around_scores = F32 * batch * (2 * heads * geometry.head_dim + 2 * geometry.embedding_length)
        cpu_only = max(scores + around_scores, activations)
    if gpu_blocks == 0 and not output_on_gpu:
        return GraphReserve(gpu=0, cpu=cpu_only)

    host_blocks = range(geometry.block_count - gpu_blocks)
    embeddings = F32 * batch * geometry.embedding_length
    offloads = op_offload and batch >= OP_OFFLOAD_MIN_BATCH
    staging = _staging_bytes(geometry, host_blocks, activations) if offloads else 0
    if offloads or not host_blocks:
        cpu = embeddings
    elif op_offload:
        # Batches too small to offload: the CPU computes its own blocks, as if it ran alone.
        cpu = cpu_only
    else:
        # The CPU runs its own blocks on the batch it embedded: their FFN phase, or without flash
        # attention the larger float32 attention scores.
        cpu = (activations if flash_attention else cpu_only) + embeddings

    # With op offload the GPU receives the mask as a float32 input and casts it itself.
    mask_input = (F32 if op_offload else F16) * cells * batch
    ffn_phase = mask_input + activations + CUDA_SCRATCH_FFN_PHASE + staging
    if flash_attention:
        if kv_cache_quantized:
            # CUDA's flash attention converts quantized K and V to f16 in its pool, whole cache range.
            ffn_phase += 2 * F16 * geometry.head_dim * geometry.head_count_kv * cells
        if offloads and host_blocks:
            host_attention = _host_attention_phase(geometry, host_blocks, block_cache_bytes, batch=batch,
                                                   cells=cells, kv_cache_quantized=kv_cache_quantized)
            return GraphReserve(gpu=max(ffn_phase, host_attention), cpu=cpu)
        return GraphReserve(gpu=ffn_phase, cpu=cpu)
    # float32 scores, and their f16 copy for the V x KQ product on CUDA.
    attention_phase = mask_input + (F32 + F16) * cells * batch * heads + CUDA_SCRATCH_ATTENTION_PHASE
    return GraphReserve(gpu=max(attention_phase, ffn_phase), cpu=cpu)
