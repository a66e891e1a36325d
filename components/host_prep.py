"""Step 1 of the recipe: a VM whose Docker engine can run the Ollama container, on its GPU."""

from typing import Optional

import pulumi

from components.transport import CommandTarget, HostCommand
from ollama_gpu.settings import HostPrepSettings


class HostPrep(pulumi.ComponentResource):
    """Docker engine (installed when missing, usable by the login user) → NVIDIA driver check →
    NVIDIA apt repository → toolkit → Docker runtime → cgroup setting → GPU check; the NVIDIA steps
    only for a GPU profile.

    Each step is its own command so a failure names the step, and each script is idempotent and
    prints whether it changed anything. Destroy leaves the host as it is (see README)."""

    ready: HostCommand

    def __init__(self, name: str, prep: HostPrepSettings, target: CommandTarget, *, gpu: bool, image: str,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ollama-gpu:index:HostPrep", name, None, opts)
        assert target.host is not None, "host prep runs on an SSH target"
        steps: list[tuple[str, str, dict]] = [
            ("docker-engine", "host/docker-engine.sh", {
                "APT_LOCK_TIMEOUT_SECONDS": prep.apt_lock_timeout_seconds,
                "INSTALL_DOCKER": prep.install_docker,
                "DOCKER_USER": target.host.user,
                "REGISTRY_MIRROR": prep.docker_registry_mirror or "",
                "INSECURE_REGISTRIES": " ".join(prep.docker_insecure_registries),
            }),
        ]
        if gpu:
            steps += [
                ("nvidia-driver", "host/nvidia-driver.sh", {}),
                ("nvidia-apt-repo", "host/nvidia-apt-repo.sh", {
                    "NVIDIA_REPO_URL": prep.nvidia_repo_url,
                    "NVIDIA_KEY_FINGERPRINT": prep.nvidia_key_fingerprint,
                    "APT_LOCK_TIMEOUT_SECONDS": prep.apt_lock_timeout_seconds,
                }),
                ("nvidia-toolkit", "host/nvidia-toolkit.sh", {
                    "TOOLKIT_VERSION": prep.toolkit_version or "",
                    "APT_LOCK_TIMEOUT_SECONDS": prep.apt_lock_timeout_seconds,
                }),
                ("docker-nvidia-runtime", "host/docker-nvidia-runtime.sh", {}),
                ("nvidia-cgroups", "host/nvidia-cgroup-fix.sh", {"NO_CGROUPS": "true" if prep.cgroup_fix else "false"}),
            ]
            if prep.gpu_check:
                steps.append(("gpu-check", "host/gpu-check.sh", {"IMAGE": image}))

        previous: list[pulumi.Resource] = []
        for step_name, script, params in steps:
            step = target.command(
                f"{name}-{step_name}", script, params, privileged=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
            )
            previous = [step]
        self.ready = previous[0]
        self.register_outputs({})
