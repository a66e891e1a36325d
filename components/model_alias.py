"""Steps 3 and 4 of the recipe: pull the base model, create the tuned alias, and load it."""

import json
from typing import Optional

import pulumi

from components.host_command import CommandTarget, HostCommand
from ollama_gpu.endpoints import api_url_on_host
from ollama_gpu.settings import Settings, duration_seconds


class ModelAlias(pulumi.ComponentResource):
    """The alias is one command whose create text holds the full /api/create request, so a changed
    parameter is a one-line diff in `pulumi preview --diff` and an in-place update; its delete
    removes the alias only, never the base model."""

    alias: HostCommand
    warmed: HostCommand

    def __init__(self, name: str, settings: Settings, target: CommandTarget, container: pulumi.Resource,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ollama-gpu:index:ModelAlias", name, None, opts)
        model = settings.model
        api = api_url_on_host(settings)
        load_timeout = int(duration_seconds(settings.server.env.load_timeout))

        def after(*resources: pulumi.Resource, timeout: Optional[str] = None) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, depends_on=list(resources),
                custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout) if timeout else None,
            )

        pull = target.command(
            "model-pull", "host/model-pull.sh",
            {
                "API_URL": api,
                "BASE_MODEL": model.base,
                "SHOW_REQUEST": json.dumps({"model": model.base}),
                "PULL_REQUEST": json.dumps({"model": model.base, "stream": True}),
                "PULL_TIMEOUT_SECONDS": int(duration_seconds(model.pull_timeout)),
            },
            opts=after(container, timeout=model.pull_timeout),
        )
        self.alias = target.command(
            "model-alias", "host/model-alias.sh",
            {"API_URL": api, "ALIAS": model.alias, "CREATE_REQUEST": json.dumps(create_request(settings), sort_keys=True)},
            delete=("host/model-alias-delete.sh",
                    {"API_URL": api, "ALIAS": model.alias, "DELETE_REQUEST": json.dumps({"model": model.alias})}),
            opts=after(pull),
        )
        self.warmed = self.alias
        if model.warm:
            self.warmed = target.command(
                "model-warm", "host/model-warm.sh",
                {
                    "API_URL": api,
                    "ALIAS": model.alias,
                    "WARM_REQUEST": json.dumps({"model": model.alias, "keep_alive": -1}),
                    "LOAD_TIMEOUT_SECONDS": load_timeout,
                },
                # A new container or changed alias starts cold: load again.
                triggers=[container.id, self.alias.create],
                opts=after(self.alias, timeout=f"{load_timeout + 60}s"),
            )
        self.register_outputs({"alias": model.alias})


def create_request(settings: Settings) -> dict:
    """The POST /api/create body: the Modelfile of the recipe in the API's JSON form."""
    return {
        "model": settings.model.alias,
        "from": settings.model.base,
        "parameters": settings.model.parameters.as_api(),
        "stream": False,
    }
