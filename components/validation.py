"""Reads the stack config from the Pulumi engine and checks it, and the plan it implies, before anything is registered."""

import os
from typing import NoReturn, Optional

import pulumi
from pulumi.runtime import config as runtime_config

from components.engine_stop import ALREADY_REPORTED
from ollama_gpu.config_loader import load_settings, plaintext_secrets_in_stack_file, values_from_engine_config
from ollama_gpu.errors import UserError
from ollama_gpu.fleet import fleet_members
from ollama_gpu.preflight import require_reachable_host
from ollama_gpu.planner.plan import Plan
from ollama_gpu.settings import Settings
from ollama_gpu.stack_plan import plan_with_notes, refuse_unloadable


class Refused(SystemExit):
    """The program stops before registering anything, after logging `message` as its one error.

    Not a pulumi.RunError: the Python exec shim exits 1 after one, and the engine then adds "an
    unhandled error occurred: program exited with non-zero exit code: 1" under the real message.
    Exit code 32 is the language host's "the error was already shown"."""

    def __init__(self, message: str):
        super().__init__(ALREADY_REPORTED)
        self.message = message

    def __str__(self) -> str:
        return self.message


def refuse(error: UserError) -> NoReturn:
    pulumi.log.error(str(error))
    raise Refused(str(error)) from None


def load_settings_or_fail() -> Settings:
    """A refusal prints its message alone: the user sees what to fix, not a traceback."""
    engine_config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {*runtime_config.get_config_secret_keys_env(), *filter(runtime_config.is_config_secret, engine_config)}
    stack = pulumi.get_stack()
    try:
        plaintext_secrets_in_stack_file(stack)
        settings = load_settings(
            stack, values_from_engine_config(stack, engine_config, secret_keys), agent_socket=os.environ.get("SSH_AUTH_SOCK")
        )
        require_reachable_host(settings)
        for index, member in enumerate(fleet_members(settings)):
            require_reachable_host(member.settings, key=f"hosts[{index}]")
    except UserError as error:
        refuse(error)
    return settings


def plan_or_fail(settings: Settings) -> Optional[Plan]:
    """The plan is part of validation: a model that cannot load stops here; the rest are warnings."""
    try:
        plan, reasons = plan_with_notes(settings)
        refuse_unloadable(settings, plan)
    except UserError as error:
        refuse(error)
    for reason in reasons:
        pulumi.log.warn(reason)
    if plan is None:
        return None
    for warning in plan.warnings:
        pulumi.log.warn(f"plan: {warning}")
    return plan
