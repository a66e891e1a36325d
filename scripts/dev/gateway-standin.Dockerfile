# Stand-in for the official caddy image (which cannot be pulled here): Debian's caddy package,
# version 2.6.2 as bookworm ships it and pins.env pins for the official image, with the official
# image's layout: config and data under /config and /data (the CA the gateway exports lives in
# /data), the Caddyfile at /etc/caddy/Caddyfile, and the same run command.
ARG BASE_IMAGE=ollama-gpu-test/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends caddy=2.6.2-* \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /config /data
COPY . /
ENV XDG_CONFIG_HOME=/config \
    XDG_DATA_HOME=/data
WORKDIR /srv
EXPOSE 80 443 2019
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
