"""The OpenAI-compatible front: chat completions (chat.py, its SSE chunks in chat_stream.py, and the route table
that also carries completions.py, embeddings.py and models.py), the Responses API (responses.py with its wire
models in wire.py, response objects, stream framing and conversation storage), and OpenAI's error body
(errors.py). Imports nothing here, so each module loads alone; it knows the gateway, never providers.
"""
