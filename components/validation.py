"""Reads the stack config from the Pulumi engine and checks it, and the plan it implies, before anything is registered."""

import os
from typing import Optional

import pulumi
from pulumi.runtime import config as runtime_config

from ollama_gpu.config_loader import load_settings, plaintext_secrets_in_stack_file, values_from_engine_config
from ollama_gpu.errors import UserError
from ollama_gpu.preflight import require_reachable_host
from ollama_gpu.planner.plan import Plan
from ollama_gpu.settings import Settings
from ollama_gpu.stack_plan import plan_with_notes, refuse_unloadable


def load_settings_or_fail() -> Settings:
    """A RunError prints its message alone: the user sees what to fix, not a traceback."""
    engine_config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {*runtime_config.get_config_secret_keys_env(), *filter(runtime_config.is_config_secret, engine_config)}
    stack = pulumi.get_stack()
    try:
        plaintext_secrets_in_stack_file(stack)
        settings = load_settings(
            stack, values_from_engine_config(stack, engine_config, secret_keys), agent_socket=os.environ.get("SSH_AUTH_SOCK")
        )
        require_reachable_host(settings)
    except UserError as error:
        raise pulumi.RunError(str(error)) from None
    return settings


def plan_or_fail(settings: Settings) -> Optional[Plan]:
    """The plan is part of validation: a model that cannot load stops here; the rest are warnings."""
    try:
        plan, reasons = plan_with_notes(settings)
        refuse_unloadable(settings, plan)
    except UserError as error:
        raise pulumi.RunError(str(error)) from None
    for reason in reasons:
        pulumi.log.warn(reason)
    if plan is None:
        return None
    for warning in plan.warnings:
        pulumi.log.warn(f"plan: {warning}")
    return plan
