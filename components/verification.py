"""Step 5, beyond the recipe: after the alias is loaded, compare what the server did with the plan."""

import json
from typing import Any, Optional

import pulumi

from components.host_command import CommandTarget
from ollama_gpu.endpoints import api_url_on_host
from ollama_gpu.settings import Settings
from ollama_gpu.verification import format_table, verify_deployment


class PlanVerification(pulumi.ComponentResource):
    """Reads /api/ps and the server's placement log on the host and exports planned vs actual.
    Mismatches are warnings, or a failed deploy with verification.failOnMismatch."""

    result: pulumi.Output

    def __init__(self, name: str, settings: Settings, target: CommandTarget, plan: Optional[dict[str, Any]],
                 triggers: list, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ollama-gpu:index:PlanVerification", name, None, opts)
        report = target.command(
            "verify", "host/verify.sh",
            {
                "API_URL": api_url_on_host(settings),
                "CONTAINER_NAME": settings.server.container_name,
                "SHOW_REQUEST": json.dumps({"model": settings.model.base}),
            },
            # `docker logs` needs root (or the docker group) on the host.
            privileged=True,
            triggers=triggers,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.result = report.stdout.apply(lambda text: judge(settings, plan, text, resource=self))
        self.register_outputs({"result": self.result})


def judge(settings: Settings, plan: Optional[dict[str, Any]], text: str,
          resource: Optional[pulumi.Resource] = None) -> dict[str, Any]:
    """The `verification` output: warnings go to `pulumi up`'s log; with failOnMismatch they fail it."""
    verification = verify_deployment(settings, plan, text)
    if verification is None:
        return {"status": "no plan for this model" if plan is None else "not run yet"}
    for warning in verification.warnings:
        pulumi.log.warn(f"plan vs server: {warning}", resource=resource)
    if not verification.ok and settings.verification.fail_on_mismatch:
        raise pulumi.RunError(
            f"stack '{settings.stack}': the server differs from the plan "
            f"(ollama-gpu:verification.failOnMismatch is true):\n{format_table(verification)}"
        )
    return verification.to_dict()
