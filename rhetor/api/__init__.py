"""The web layer: one FastAPI app on one port. Thin: parse, call the Gateway, frame, map errors to statuses."""
