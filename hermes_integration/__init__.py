"""Hermes integration for Rhetor: the registry client, the registration lifecycle (register, heartbeat,
re-register, unregister) and `python -m hermes_integration register|unregister|status` for scripts.

Must never import FastAPI: the web layer drives `Registration`; scripts drive the command line.
"""

from hermes_integration.client import TOKEN_HEADER, HermesClient, HermesError, HermesUnreachableError
from hermes_integration.registration import (
    CAPABILITIES,
    NAME,
    Registration,
    endpoint_url,
    registration_payload,
)

__all__ = [
    "CAPABILITIES",
    "NAME",
    "TOKEN_HEADER",
    "HermesClient",
    "HermesError",
    "HermesUnreachableError",
    "Registration",
    "endpoint_url",
    "registration_payload",
]
