"""Rhetor — the LLM gateway of the Tekton platform.

Public API: `__version__`. Everything else is reached through `rhetor.gateway.Gateway` (in-process) or the
web API (`rhetor.api.app.create_app`).
"""

__version__ = "0.2.0"
__all__ = ["__version__"]
