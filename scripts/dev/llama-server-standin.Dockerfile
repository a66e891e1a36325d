# STAND-IN for the official llama.cpp server image ghcr.io/ggml-org/llama.cpp:server-cuda-b<build>
# (which cannot be pulled here): the same build of llama-server, compiled for the CPU only by
# build-llama-server.sh, with the official image's layout (.devops/cuda.Dockerfile, target
# "server"): the binary and its libraries together in /app, the same entry point, LLAMA_ARG_HOST,
# health check and curl. Debian instead of Ubuntu; the NVIDIA variables the CUDA base image sets
# are set too, so a container started with the NVIDIA runtime sees what the real one would.
# Build context: the product directory of build-llama-server.sh (llama-server + lib*.so), as /app.
ARG BASE_IMAGE=ollama-gpu-test/debian:bookworm
FROM ${BASE_IMAGE}
ARG LLAMA_CPP_BUILD
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
COPY . /app/
LABEL org.opencontainers.image.title="llama.cpp" \
      org.opencontainers.image.version="b${LLAMA_CPP_BUILD}" \
      org.opencontainers.image.description="STAND-IN: CPU-only llama-server b${LLAMA_CPP_BUILD} built from source for the ollama-gpu tests; not the CUDA image"
ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_VISIBLE_DEVICES=all \
    LLAMA_ARG_HOST=0.0.0.0
WORKDIR /app
HEALTHCHECK CMD [ "curl", "-f", "http://localhost:8080/health" ]
ENTRYPOINT [ "/app/llama-server" ]
