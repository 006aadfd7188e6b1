"""Typed stubs from topic schemas: Python, TypeScript, Go."""
