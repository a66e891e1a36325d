"""The ollama-gpu policy pack: `pulumi preview --policy-pack policy` (CI passes it to preview and up).

Every policy is mandatory: a violation fails the preview and blocks the update. The rules live in
ollama_gpu_rules.py as pure functions; this file only adapts them to pulumi_policy. Pulumi runs
this file with the pack directory on sys.path, which is what makes the plain import below work.
"""

from typing import Callable

from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationArgs, ResourceValidationPolicy

import ollama_gpu_rules as rules


def _policy(
    name: str, description: str, check: Callable[[ResourceValidationArgs], list[str]]
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        for message in check(args):
            report_violation(message)

    return ResourceValidationPolicy(name=name, description=description, validate=validate)


PolicyPack(
    name="ollama-gpu",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        _policy(
            "image-pinned",
            "Docker images carry an explicit version tag or digest, never 'latest'.",
            lambda args: rules.unpinned_images(args.resource_type, args.props),
        ),
        _policy(
            "api-not-public-without-opt-in",
            "The Ollama API port is published on loopback unless the stack opts in to a public bind.",
            lambda args: rules.public_api_binds(args.resource_type, args.props),
        ),
        _policy(
            "models-volume-retained",
            "The models volume outlives the stack (retain_on_delete, declared by label, or protect).",
            lambda args: rules.unretained_volumes(args.resource_type, args.props, args.opts.protect),
        ),
        _policy(
            "ssh-host-key-pinned",
            "Every SSH connection checks the GPU host's key against the pinned one.",
            lambda args: rules.unpinned_ssh_host_keys(args.resource_type, args.props),
        ),
        _policy(
            "quantized-kv-cache-needs-flash-attention",
            "A quantized OLLAMA_KV_CACHE_TYPE comes with OLLAMA_FLASH_ATTENTION on, or Ollama ignores it.",
            lambda args: rules.kv_cache_without_flash_attention(args.resource_type, args.props),
        ),
    ],
)
