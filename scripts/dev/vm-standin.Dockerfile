# STAND-IN for a freshly rented cloud GPU VM, for the end-to-end tests: reached only over SSH on
# its own address, a sudo-capable user "ubuntu", Debian's apt sources, and NO Docker: host prep
# installs it. Without systemd, a stand-in systemctl starts and restarts the Docker engine that
# host prep installs; a stand-in nvidia-smi plays the NVIDIA driver (there is no GPU).
# Run (Docker in Docker needs these; --privileged is refused on these machines):
#   docker run --network NET --ip IP --cap-add ALL --cap-drop SYS_RESOURCE
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined
#     --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm'
#     -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run -v /var/lib/docker
#     -e AUTHORIZED_KEY="<public key>" [-e APT_LOCK_SECONDS=N] <image>
ARG BASE_IMAGE=ollama-gpu-test/debian:bookworm
FROM ${BASE_IMAGE}
COPY . /
# pam_loginuid cannot write /proc/self/loginuid in an unprivileged container; left "required" it
# would refuse every SSH session.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openssh-server sudo curl gpg ca-certificates python3 procps \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_* \
    && sed -i 's/^session\s\+required\s\+pam_loginuid\.so/session optional pam_loginuid.so/' /etc/pam.d/sshd \
    && useradd --create-home --shell /bin/bash ubuntu \
    && echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/ubuntu \
    && chmod 0440 /etc/sudoers.d/ubuntu \
    && touch /var/log/ssh-commands.log && chmod 0666 /var/log/ssh-commands.log
ENTRYPOINT ["/usr/local/sbin/start-vm-standin"]
