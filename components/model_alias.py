"""Steps 3 and 4 of the recipe: pull the base model, then create the tuned alias and load it."""

import json
from typing import Optional

import pulumi

from components.transport import CommandTarget, HostCommand
from ollama_gpu.settings import ModelSettings, duration_seconds

PROGRESS_STEP_PERCENT = 10
LOAD_MARGIN_SECONDS = 60


class ModelAlias(pulumi.ComponentResource):
    """The alias is one command whose create text holds the full /api/create request, so a changed
    parameter is a one-line diff in `pulumi preview --diff` and the only change: an in-place update
    that re-creates the alias, loads it and reports the placement again. With
    verification.failOnMismatch the planned layer split is part of the step (EXPECTED_OFFLOAD) and the
    step fails, so it is retried, while the server differs; without it nothing planner-only is. Its delete removes the
    alias only, never the base model. A new alias name, models volume or container replaces it
    (old alias deleted first), so no alias is left behind and the report is always current."""

    pull: HostCommand
    alias: HostCommand

    def __init__(self, name: str, model: ModelSettings, target: CommandTarget, *, api_url: str, container: pulumi.Resource,
                 container_name: str, models_volume: str, load_timeout_seconds: int,
                 expected_offload: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ollama-gpu:index:ModelAlias", name, None, opts)
        pull_timeout = int(duration_seconds(model.pull_timeout))

        def after(*resources: pulumi.Resource, **options) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(resources), **options)

        self.pull = target.command(
            f"{name}-pull", "host/model-pull.sh",
            {
                "API_URL": api_url,
                "PULL_NAME": model.pull_name,
                "SHOW_REQUEST": json.dumps({"model": model.pull_name}),
                "PULL_REQUEST": json.dumps(pull_request(model)),
                "PULL_TIMEOUT_SECONDS": pull_timeout,
                "PROGRESS_STEP_PERCENT": PROGRESS_STEP_PERCENT,
            },
            # A new volume starts empty: pull into it.
            triggers=[models_volume],
            opts=after(container),
        )
        self.alias = target.command(
            f"{name}-alias", "host/model-alias.sh",
            {
                "API_URL": api_url,
                "ALIAS": model.alias,
                "CREATE_REQUEST": json.dumps(create_request(model), sort_keys=True),
                "LOAD_REQUEST": json.dumps({"model": model.alias, "keep_alive": -1}),
                # Past the server's own load timeout, so its reason arrives before curl gives up.
                "LOAD_TIMEOUT_SECONDS": load_timeout_seconds + LOAD_MARGIN_SECONDS,
                "SHOW_REQUEST": json.dumps({"model": model.pull_name}),
                "CONTAINER_NAME": container_name,
                "EXPECTED_OFFLOAD": expected_offload,
            },
            delete=("host/model-alias-delete.sh",
                    {"API_URL": api_url, "ALIAS": model.alias, "DELETE_REQUEST": json.dumps({"model": model.alias})}),
            # `docker logs` in the report needs root or the docker group.
            privileged=True,
            triggers=[model.alias, models_volume, container.id],
            opts=after(self.pull, delete_before_replace=True),
        )
        self.register_outputs({})


def pull_request(model: ModelSettings) -> dict:
    request = {"model": model.pull_name, "stream": True}
    if model.insecure_registry:
        request["insecure"] = True
    return request


def create_request(model: ModelSettings) -> dict:
    """The POST /api/create body: the Modelfile of the recipe in the API's JSON form."""
    return {
        "model": model.alias,
        "from": model.pull_name,
        "parameters": model.parameters.as_api(),
        "stream": False,
    }
