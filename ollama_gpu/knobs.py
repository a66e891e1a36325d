"""Which tuning knobs are real for the pinned Ollama version (see pins.env).

The server's startup `server config` log line and `/api/show` are the judges; the integration tests
check both against these tables, so a name listed here that the server does not know fails CI.
Sources: envconfig/config.go `AsMap` and api/types.go `Options`/`Runner` of Ollama v0.24.0,
parser/parser.go `deprecatedParameters` for the removed Modelfile parameters.
"""

SERVER_ENV_VARS = frozenset(
    {
        "OLLAMA_CONTEXT_LENGTH",
        "OLLAMA_DEBUG",
        "OLLAMA_DEBUG_LOG_REQUESTS",
        "OLLAMA_EDITOR",
        "OLLAMA_FLASH_ATTENTION",
        "OLLAMA_GPU_OVERHEAD",
        "OLLAMA_HOST",
        "OLLAMA_KEEP_ALIVE",
        "OLLAMA_KV_CACHE_TYPE",
        "OLLAMA_LLM_LIBRARY",
        "OLLAMA_LOAD_TIMEOUT",
        "OLLAMA_MAX_LOADED_MODELS",
        "OLLAMA_MAX_QUEUE",
        "OLLAMA_MAX_TRANSFER_STREAMS",
        "OLLAMA_MODELS",
        "OLLAMA_MULTIUSER_CACHE",
        "OLLAMA_NEW_ENGINE",
        "OLLAMA_NOHISTORY",
        "OLLAMA_NOPRUNE",
        "OLLAMA_NO_CLOUD",
        "OLLAMA_NUM_PARALLEL",
        "OLLAMA_ORIGINS",
        "OLLAMA_REMOTES",
        "OLLAMA_SCHED_SPREAD",
        "OLLAMA_VULKAN",
    }
)

# Settings people copy from old guides. Each maps to what actually has that effect today.
REMOVED_ENV_VARS = {
    "OLLAMA_NO_MMAP": "it was proposed but never merged into Ollama; set "
    "model.parameters.useMmap: false to load the weights whole",
    "OLLAMA_MAX_VRAM": "it was removed in Ollama 0.7; reserve VRAM with server.env.gpuOverhead",
    "OLLAMA_INTEL_GPU": "it was removed in Ollama 0.12.11; remove it",
    "OLLAMA_RUNNERS_DIR": "the pinned Ollama does not read it (its runners ship inside the binary); remove it",
    "OLLAMA_TMPDIR": "the pinned Ollama does not read it; remove it",
}

# Env vars the program derives from typed settings: setting them through server.extraEnv as
# well would make two config keys fight over one value.
TYPED_ENV_VARS = {
    "OLLAMA_FLASH_ATTENTION": "server.env.flashAttention",
    "OLLAMA_KV_CACHE_TYPE": "server.env.kvCacheType",
    "OLLAMA_GPU_OVERHEAD": "server.env.gpuOverhead",
    "OLLAMA_KEEP_ALIVE": "server.env.keepAlive",
    "OLLAMA_NUM_PARALLEL": "server.env.numParallel",
    "OLLAMA_MAX_LOADED_MODELS": "server.env.maxLoadedModels",
    "OLLAMA_MAX_QUEUE": "server.env.maxQueue",
    "OLLAMA_LOAD_TIMEOUT": "server.env.loadTimeout",
    "OLLAMA_CONTEXT_LENGTH": "server.env.contextLength",
    "OLLAMA_DEBUG": "server.env.debug",
    "OLLAMA_ORIGINS": "server.env.origins",
    # The container always listens on 11434 inside; the host side is server.bindAddress/port.
    "OLLAMA_HOST": "server.bindAddress and server.port",
    "OLLAMA_MODELS": "server.modelsVolume (mounted at /root/.ollama)",
}

MODELFILE_PARAMETERS = frozenset(
    {
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "num_thread",
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_last_n",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "stop",
    }
)

REMOVED_MODELFILE_PARAMETERS = {
    "use_mlock": "it was removed in Ollama 0.7 and is ignored; keep the model resident with "
    "server.env.keepAlive: '-1' and enough host RAM (see the plan's RAM check)",
    "low_vram": "it was removed in Ollama 0.7; reserve VRAM with server.env.gpuOverhead",
    "f16_kv": "it was removed in Ollama 0.7; choose the KV cache type with server.env.kvCacheType",
    "logits_all": "it was removed in Ollama 0.7; remove it",
    "vocab_only": "it was removed in Ollama 0.7; remove it",
    "penalize_newline": "it was removed in Ollama 0.7; remove it",
    "mirostat": "it was removed in Ollama 0.7; use temperature/topK/topP/minP",
    "mirostat_tau": "it was removed in Ollama 0.7; use temperature/topK/topP/minP",
    "mirostat_eta": "it was removed in Ollama 0.7; use temperature/topK/topP/minP",
}
