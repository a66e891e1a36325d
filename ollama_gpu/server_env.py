"""The container's environment, derived from typed settings: only variables the pinned server reads."""

from ollama_gpu.settings import ServerEnv


def effective_env(env: ServerEnv) -> dict[str, str]:
    derived = {
        "OLLAMA_FLASH_ATTENTION": "1" if env.flash_attention else "0",
        "OLLAMA_KV_CACHE_TYPE": env.kv_cache_type,
        "OLLAMA_GPU_OVERHEAD": str(int(env.gpu_overhead)),
        "OLLAMA_KEEP_ALIVE": env.keep_alive,
        "OLLAMA_NUM_PARALLEL": str(env.num_parallel),
        "OLLAMA_MAX_LOADED_MODELS": str(env.max_loaded_models),
        "OLLAMA_MAX_QUEUE": str(env.max_queue),
        "OLLAMA_LOAD_TIMEOUT": env.load_timeout,
    }
    if env.context_length is not None:
        derived["OLLAMA_CONTEXT_LENGTH"] = str(env.context_length)
    if env.debug:
        derived["OLLAMA_DEBUG"] = "1"
    if env.origins:
        derived["OLLAMA_ORIGINS"] = ",".join(env.origins)
    return {**derived, **env.extra_env}
