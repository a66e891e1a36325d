# A real OCI distribution server (Debian's docker-registry, distribution 2.8) for the end-to-end
# tests: Ollama pulls models from it and Docker pulls the Ollama image through it as a mirror.
# The same image also serves the registry's storage as plain files (busybox httpd), because
# Ollama 0.24.0 only follows blob redirects that point to another host (server/download.go).
# Run: <image> registry BLOB_BASE_URL   or   <image> blobs
ARG BASE_IMAGE=ollama-gpu-test/debian:bookworm
FROM ${BASE_IMAGE}
COPY . /
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry busybox \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/usr/local/sbin/start-registry-standin"]
