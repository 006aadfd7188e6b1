"""The Python side of the worker protocol (docs/worker-protocol.md): ``python -m
wistro.sdk.python.worker`` runs ``runtime: process`` Python steps (docs/steps.md)."""
