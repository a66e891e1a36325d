"""Defaults each GPU profile brings, written in the same keys a stack file uses.

A stack file only has to say what differs from its profile; anything here can be overridden.
Hardware figures (VRAM, bandwidth, RAM) belong to the planner's hardware profiles and are not
repeated here.
"""

import copy
from typing import Any

# The operator's tuned A10 recipe (field-notes.md), minus the settings that do nothing. The other
# profiles are this one with their differences applied (deep_merge below).
_A10 = {
    "server": {
        "env": {
            "flashAttention": True,
            # Halves the KV cache with no visible quality loss; needs flash attention.
            "kvCacheType": "q8_0",
            # 1 GiB was stable on the A10; 6 GiB wasted VRAM that could hold layers.
            "gpuOverhead": 1 * 2**30,
            # The default 5m idle unload means reloading 32 GB on the next request.
            "keepAlive": "-1",
            "numParallel": 1,
            "maxLoadedModels": 1,
            # Loading 32 GB from a cloud disk can outlast the 5m default.
            "loadTimeout": "15m",
        }
    },
    "model": {
        "base": "qwen3:30b-a3b-thinking-2507-q8_0",
        "alias": "qwen3-30b-a3b-2507-q8:ctx32k",
        "parameters": {
            "numCtx": 32768,
            # 32768 − 20480 leaves 12288 tokens for the prompt. The operator's engine prefilled 40
            # tokens/s, so ~12K was also what answered within a 5-minute client timeout; the pinned
            # 0.24.0 streams host layers through the GPU (derived A10: ~210 tokens/s even for a 32K
            # prompt, README "GPU lab"), so now only the thinking budget (15-20K) sets the split.
            "numPredict": 20480,
            # Keep history when the context fills; 0 recomputed it and timed out.
            "numKeep": -1,
            "useMmap": False,
        },
    },
}

def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Stack values win; nested sections merge key by key so a stack can change one field."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "a10": _A10,
    # The model nearly fits a V100's 32 GB and its 8 host cores make the CPU part slow: a smaller
    # GPU reserve keeps more layers on the GPU.
    "v100": deep_merge(_A10, {"server": {"env": {"gpuOverhead": 512 * 2**20}}}),
    # CPU only, for trying the program on a laptop: a small model the planner's catalog knows, its
    # whole 2K context, no GPU reserve.
    "none": deep_merge(
        _A10,
        {
            "server": {"env": {"gpuOverhead": 0, "loadTimeout": "5m"}},
            "model": {
                "base": "tinyllama:1.1b",
                "alias": "tinyllama-1.1b:ctx2k",
                "parameters": {"numCtx": 2048, "numPredict": 1024},
            },
        },
    ),
}
