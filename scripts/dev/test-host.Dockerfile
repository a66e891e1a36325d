# The SSH test host: a Debian machine reached over real SSH as the sudo-capable user "ubuntu", like
# a fresh cloud VM, for the host-prep scripts. It has no Docker and no systemd; its stand-in
# systemctl only records Docker restarts. /etc/docker exists but holds no daemon.json, as on a
# Docker host nobody has configured yet.
# Run: docker run --network host -e AUTHORIZED_KEY="<public key>" <image> <port>
ARG BASE_IMAGE=ollama-gpu-test/debian:bookworm
FROM ${BASE_IMAGE}
COPY . /
# pam_loginuid cannot write /proc/self/loginuid in an unprivileged container; left "required" it
# would refuse every SSH session.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openssh-server sudo curl gpg ca-certificates python3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_* \
    && sed -i 's/^session\s\+required\s\+pam_loginuid\.so/session optional pam_loginuid.so/' /etc/pam.d/sshd \
    && useradd --create-home --shell /bin/bash ubuntu \
    && echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/ubuntu \
    && chmod 0440 /etc/sudoers.d/ubuntu \
    && mkdir -p /etc/docker \
    && touch /var/log/standin-systemctl.log
ENTRYPOINT ["/usr/local/sbin/start-test-host-sshd"]
