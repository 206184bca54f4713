"""What `/api/v1/providers` (and `/providers`) says of each provider or deployment: availability and why not,
models, default model, breakers and Retry-After cool-downs, and for a deployment of the providers file what it
is and how it is doing (keys only as counts and cool-downs, never their values). Reads the gateway's parts;
changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rhetor.gateway import Gateway
    from rhetor.providers.base import Provider


async def provider_status(gw: Gateway) -> dict[str, Any]:
    avail = await gw.providers.availability()
    breakers = gw.breaker.snapshot()
    cooling = gw.runner.cooldowns.snapshot()
    out: dict[str, Any] = {}
    for name, a in avail.items():
        provider = gw.providers.get(name)
        models = await provider.models()
        out[name] = {
            "name": name.capitalize() if name != "openai" else "OpenAI",
            "available": a.ok,
            "reason": a.reason,
            "default_model": provider.default_model,
            "models": [{"id": m, "name": m} for m in models],
            "breakers": {k: v for k, v in breakers.items() if k.startswith(f"{name}/")},
            "cooling_down": {k: v for k, v in cooling.items() if k.startswith(f"{name}/")},
        }
        if name in gw.providers.deployments:  # a deployment of the providers file: what it is, how it is doing
            out[name].update(_deployment_status(gw, name, provider))
    default = next((n for n in ("anthropic", "openai", "gemini", "ollama") if avail[n].ok), "simulated")
    return {"providers": out, "default_provider": default, "default_model": gw.defaults[default]}


def _deployment_status(gw: Gateway, name: str, provider: Provider) -> dict[str, Any]:
    spec = gw.providers.deployments[name]
    keys = getattr(provider, "keys_state", None)
    balancer = gw.runner.balancer
    stats = balancer.snapshot().get(name, {}) if balancer is not None else {}
    return {"deployment": spec.name, "kind": spec.kind, "preset": spec.preset.name if spec.preset else None,
            "base_url": spec.base_url, "region": spec.region, "tags": list(spec.tags), "weight": spec.weight,
            "max_concurrency": spec.max_concurrency, "discover": spec.discover,
            "keys": keys() if callable(keys) else [],
            "in_flight": stats.get("in_flight", 0), "ttft_ewma_ms": stats.get("ttft_ewma_ms")}


__all__ = ["provider_status"]
