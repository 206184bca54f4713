"""The native front — the tekton-llm-client contract and Tekton's own routes: chat, generate, contexts,
providers and models (routes.py, with its bodies in schemas.py and reply shapes in shapes.py), memory and
templates, and the flat WebSocket protocol (ws.py). Errors are the native envelope (rhetor.api.responses).
Imports nothing here, so each module loads alone; it knows the gateway, never providers or other fronts.
"""
