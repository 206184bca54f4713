"""The OpenAI-compatible front's own subpackage, growing here: the Responses API (responses.py with its wire
models, response objects, stream framing and conversation storage). Chat, embeddings and models still live in
the compat_* modules beside it until the layout refactor moves them in. Knows the gateway, never providers.
"""

from rhetor.api.openai.responses import routes

__all__ = ["routes"]
