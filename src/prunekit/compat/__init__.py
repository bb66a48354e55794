"""Compatibility shims for third-party packages (see each module)."""
