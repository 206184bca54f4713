"""Routing: the tasks.json schema, the pure router, the circuit breaker (and, in `fallback`, the runner).

This package turns a request's routing fields into an ordered chain of provider/model targets and guards
each target with a breaker. It knows provider names, never provider wire formats, HTTP or FastAPI. The
fallback runner is imported from `rhetor.routing.fallback` directly, so loading config stays cheap.
"""

from rhetor.routing.breaker import CircuitBreaker
from rhetor.routing.config import TargetSpec, TaskConfig, TaskEntry, describe, load_config, parse_config
from rhetor.routing.router import Route, Target, component_of, lookup_keys, route

__all__ = [
    "CircuitBreaker",
    "Route",
    "Target",
    "TargetSpec",
    "TaskConfig",
    "TaskEntry",
    "component_of",
    "describe",
    "load_config",
    "lookup_keys",
    "parse_config",
    "route",
]
