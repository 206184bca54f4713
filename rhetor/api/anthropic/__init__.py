"""The Anthropic-compatible front: POST /v1/messages and /v1/messages/count_tokens (messages.py), the Messages
SSE event sequence (stream.py) and Anthropic's error body (errors.py). Imports nothing here, so each module
loads alone; it knows the gateway, never providers.
"""
