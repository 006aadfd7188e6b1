"""Versions of a project running side by side: identity and traffic."""
