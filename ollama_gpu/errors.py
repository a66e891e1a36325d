"""Errors a user can cause, each carrying one message that says where the problem is and how to fix it.

The Pulumi program turns these into one logged error and an exit (components/validation.py, no traceback) and the CLIs print them on one
line and exit 2, so the message itself has to be complete.
"""


class UserError(Exception):
    """Raised for mistakes in stack configuration or the environment, never for bugs."""


class ConfigError(UserError):
    """One or more stack config values are invalid; the message lists each with its fix."""


class HostUnreachable(UserError):
    """The configured SSH target does not accept connections."""
