"""ollama-gpu: the recipe in field-notes.md as a Pulumi program, in the recipe's order."""

import pulumi

from components.gpu_host import GpuHostPrep
from components.host_command import CommandTarget
from components.model_alias import ModelAlias, create_request
from components.ollama_server import OllamaServer
from components.validation import load_settings_or_fail, plan_or_fail
from components.verification import PlanVerification
from ollama_gpu.endpoints import client_endpoint, tunnel_command
from ollama_gpu.planner.plan import format_plan_table
from ollama_gpu.server_env import effective_env

# 0. Typed config, validated as a whole: one message and nothing registered if it is wrong.
settings = load_settings_or_fail()
# 0b. Where layers and KV cache land, the decode bound and the prompt budget; refuses a model that cannot load.
plan = plan_or_fail(settings)
target = CommandTarget.for_settings(settings)

# 1. Host prep: NVIDIA toolkit, Docker's NVIDIA runtime, cgroup fix, GPU check (GPU profiles only).
host_ready = [GpuHostPrep("gpu-host", settings, target)] if settings.has_gpu else []

# 2. The Ollama container: pinned image, tuned env, kept models volume, self-healing health check.
server = OllamaServer("ollama-server", settings, opts=pulumi.ResourceOptions(depends_on=host_ready))

# 3-4. Pull the base model, create the alias from the configured parameters, load it once.
model = ModelAlias("model", settings, target, server.container, opts=pulumi.ResourceOptions(depends_on=[server]))

# 5. Read back what the server did and compare it with the plan.
verification = PlanVerification(
    "verification", settings, target, plan.to_dict() if plan else None,
    triggers=[server.container.id, model.alias.create],
    opts=pulumi.ResourceOptions(depends_on=[model.warmed]),
)

pulumi.export("endpoint", client_endpoint(settings))
pulumi.export("tunnel", tunnel_command(settings))
pulumi.export("alias", settings.model.alias)
pulumi.export("effective_env", effective_env(settings))
pulumi.export("alias_request", create_request(settings))
pulumi.export("plan", plan.to_dict() if plan else None)
pulumi.export("plan_table", format_plan_table(plan) if plan else "")
pulumi.export("verification", verification.result)
