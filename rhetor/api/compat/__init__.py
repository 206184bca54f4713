"""What the vendor-compatible fronts (rhetor.api.openai, rhetor.api.anthropic) share: reading a body into the
gateway's normalized input, the Rhetor headers, model-name resolution (common.py), lossless forwarding and
each API's usage object (fidelity.py), and the status a failure is answered with (errors.py; the error
bodies are each front's own). Imports nothing here; it knows the gateway, never providers or a front's routes.
"""
