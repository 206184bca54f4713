"""The web layer: one FastAPI app on one port. Thin: parse, call the Gateway, frame, map errors to statuses.

FastAPI is imported here first, with its OpenAPI models built on first use (rhetor.api.fastapi_import).
"""

from rhetor.api import fastapi_import

fastapi_import.load()
