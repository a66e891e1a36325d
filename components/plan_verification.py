"""Step 5, beyond the recipe: after the alias is loaded, compare what the server did with the plan."""

from typing import Any, Optional

import pulumi

from components.transport import HostCommand
from ollama_gpu.llama_verification import verify_llama_server
from ollama_gpu.settings import Settings
from ollama_gpu.verification import verify_deployment


class PlanVerification(pulumi.ComponentResource):
    """Reads the report the alias step printed (/api/ps, /api/show, the server's placement log), or
    for llama-server the report step's (/props, the server's buffer-size lines), and exports
    planned vs actual. Mismatches are warnings in `pulumi up`'s log."""

    result: pulumi.Output

    def __init__(self, name: str, settings: Settings, plan: Optional[dict[str, Any]], alias_step: HostCommand,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ollama-gpu:index:PlanVerification", name, None, opts)
        self.result = alias_step.stdout.apply(lambda text: judge(settings, plan, text, resource=self))
        self.register_outputs({"result": self.result})


def judged_llama_memory(settings: Settings, plan: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The planned buffers a llama-server deploy is held to: only a placement the program fixed
    (nCpuMoe, or a CPU-only host); under --fit llama.cpp chooses at start, and the plan's own
    choice is shown beside the server's but not judged."""
    if plan is None or (settings.has_gpu and settings.llama_server.placement == "fit"):
        return None
    return plan["memory"]


def judge(settings: Settings, plan: Optional[dict[str, Any]], text: str,
          resource: Optional[pulumi.Resource] = None) -> dict[str, Any]:
    """The `verification` output; its warnings go to `pulumi up`'s log."""
    if settings.uses_llama_server:
        verification = verify_llama_server(settings, text, judged_llama_memory(settings, plan))
        if verification is None:
            return {"status": "not run yet"}
    else:
        verification = verify_deployment(settings, plan, text)
        if verification is None:
            return {"status": "no plan for this model" if plan is None else "not run yet"}
    for warning in verification.warnings:
        pulumi.log.warn(f"plan vs server: {warning}", resource=resource)
    return verification.to_dict()
