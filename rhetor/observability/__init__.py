"""Observability: Prometheus metrics (metrics.py, bounded labels in labels.py), the access log and log format
(logs.py), and the per-request hub that feeds both from the usage ledger's records (hub.py); OpenTelemetry traces
(tracing.py: the call sites' API, a no-op when off; otel.py: the SDK, loaded only when configured; tracing_asgi.py:
the SERVER span; chat_span.py and genai.py: the GenAI attributes)."""
