"""The LLM Adapter shim — the adapter-era HTTP routes (http.py) and the WebSocket envelope protocol
(envelope.py, served on the native socket as its side protocol). Its bodies are the native fields
(rhetor.api.native.schemas) with the adapter's defaults; a provider failure is the adapter's 200 `{error}`.
Imports nothing here, so each module loads alone; it knows the gateway and the native front, never providers.
"""
