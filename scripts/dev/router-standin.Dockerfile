# Stand-in for LiteLLM's official proxy image (ghcr.io/berriai/litellm, which cannot be pulled
# here): the litellm[proxy] wheels of the version pins.env pins, downloaded from PyPI by
# build-router-image.sh, installed offline into a virtualenv on Debian's Python 3.11, with the
# official image's run command (`litellm` with the proxy's arguments) and working directory.
# Nothing is fetched at run time: LITELLM_LOCAL_MODEL_COST_MAP keeps the proxy on the cost map
# inside the wheel instead of downloading one at start.
# Build context: requirements.txt (every wheel pinned) and wheels/ (those wheels).
ARG BASE_IMAGE=ollama-gpu-test/debian:bookworm
FROM ${BASE_IMAGE}
# Metadata first: with the vfs storage driver every step after the install copies the whole tree.
ENV PATH=/opt/litellm/bin:$PATH \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    PYTHONUNBUFFERED=1
WORKDIR /app
EXPOSE 4000
ENTRYPOINT ["litellm"]
CMD ["--port", "4000"]
COPY . /tmp/litellm/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/litellm \
    && /opt/litellm/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
        --find-links /tmp/litellm/wheels -r /tmp/litellm/requirements.txt \
    && rm -rf /tmp/litellm
