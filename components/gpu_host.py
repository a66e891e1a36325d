"""Step 1 of the recipe: make Docker on the VM able to run GPU containers."""

from typing import Optional

import pulumi

from components.host_command import CommandTarget, HostCommand
from ollama_gpu.settings import Settings


class GpuHostPrep(pulumi.ComponentResource):
    """NVIDIA apt repository → toolkit → Docker runtime → cgroup fix (optional) → GPU check.

    Each step is its own command so a failure names the step, and each script is idempotent and
    prints whether it changed anything. Destroy leaves the host as it is (see README)."""

    ready: HostCommand

    def __init__(self, name: str, settings: Settings, target: CommandTarget, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ollama-gpu:index:GpuHostPrep", name, None, opts)
        prep = settings.host_prep
        steps: list[tuple[str, str, dict]] = [
            ("nvidia-apt-repo", "host/nvidia-apt-repo.sh",
             {"NVIDIA_REPO_URL": prep.nvidia_repo_url, "NVIDIA_KEY_FINGERPRINT": prep.nvidia_key_fingerprint}),
            ("nvidia-toolkit", "host/nvidia-toolkit.sh", {"TOOLKIT_VERSION": prep.toolkit_version or ""}),
            ("docker-nvidia-runtime", "host/docker-nvidia-runtime.sh", {}),
        ]
        if prep.cgroup_fix:
            steps.append(("nvidia-cgroup-fix", "host/nvidia-cgroup-fix.sh", {}))
        if prep.gpu_check:
            steps.append(("gpu-check", "host/gpu-check.sh", {"IMAGE": settings.server.image}))

        previous: list[pulumi.Resource] = []
        for step_name, script, params in steps:
            step = target.command(
                step_name, script, params, privileged=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
            )
            previous = [step]
        self.ready = previous[0]
        self.register_outputs({"ready": self.ready.stdout})
