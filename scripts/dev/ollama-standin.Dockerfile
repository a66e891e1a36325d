# Stand-in for the official ollama/ollama image (which cannot be pulled here): the same layout, run
# command and environment, on Debian instead of Ubuntu. Like the official image it has neither curl
# nor a HEALTHCHECK, so anything that probes the server must use the ollama binary or bash.
# Build context: an Ollama install prefix (bin/ollama, lib/ollama/...), merged into /usr.
ARG BASE_IMAGE=ollama-gpu-test/debian:bookworm
FROM ${BASE_IMAGE}
COPY . /usr/
ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_VISIBLE_DEVICES=all \
    OLLAMA_HOST=0.0.0.0:11434
EXPOSE 11434
ENTRYPOINT ["/usr/bin/ollama"]
CMD ["serve"]
