"""Tests that run the real Pulumi engine (the `pulumi` CLI, its language host and providers)."""
