"""Metric families for the in-process registry: plain numbers updated without locks, exposed at scrape time by
prometheus_client (each family is a custom Collector yielding prometheus_client `Metric`s, so the exposition,
text and OpenMetrics alike, is its encoders' own).

Why hand-written: prometheus_client's children take a lock and walk checks on every update, and its histograms
scan their buckets in Python. One request made ~53 such calls, ~96k instructions of the OpenAI front's ~1,300k
(benchmarks/instructions.py oa, with and without RHETOR_METRICS=0); these slots cost a few k.
The samples are those prometheus_client's own Counter, Gauge and Histogram would give (names, label order,
`_created`, cumulative buckets, `_count`, `_sum`, series in creation order), which tests/test_observability_*
check. Updates come from the event loop's thread only (no locks): the usage records, the runner's attempts and
the HTTP middleware all run there. Multi-process mode (PROMETHEUS_MULTIPROC_DIR) needs prometheus_client's
file-backed values, so `family()` builds prometheus_client's own metrics there.
prometheus_client itself is imported at the first scrape (`Families.registry`), not at start-up (~49M
instructions, ~2.4% of start-up: callgrind of its imports with and without); the families are plain objects
until then.
Knows prometheus_client's data model; nothing of requests, records or HTTP.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

Kind = Literal["counter", "gauge", "histogram"]
GaugeMode = Literal["all", "livesum", "max"]  # how multi-process mode combines a gauge across workers


class CounterSeries:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class GaugeSeries:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class HistogramSeries:
    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * len(bounds)  # per bucket, not cumulative (as prometheus_client keeps them)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # the first bucket whose bound is >= amount, as prometheus_client's `amount <= bound` scan finds it
        if amount == amount:  # NaN lands in no bucket there, so neither here
            self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


Series = CounterSeries | GaugeSeries | HistogramSeries


class Family:
    """One metric and its series by label values, created on first use and exposed in creation order: a
    prometheus_client collector (it has `describe` and `collect`, which is all a registry asks of one)."""

    def __init__(self, name: str, documentation: str, kind: Kind, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = ()) -> None:
        self.name, self.documentation, self.kind = name, documentation, kind
        self.labelnames = tuple(labelnames)
        bounds = [float(b) for b in buckets]
        if kind == "histogram" and (not bounds or bounds[-1] != math.inf):
            bounds.append(math.inf)
        self.bounds = bounds
        self._le: list[str] | None = None  # the buckets' `le` labels, written by prometheus_client at first collect
        self.children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: object) -> Any:
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected, got {len(key)}")
            child = self.children[key] = self._new()
        return child

    def _new(self) -> Series:
        if self.kind == "counter":
            return CounterSeries()
        if self.kind == "gauge":
            return GaugeSeries()
        return HistogramSeries(self.bounds)

    def describe(self) -> Iterable[Metric]:
        from prometheus_client.metrics_core import Metric

        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> Iterable[Metric]:
        from prometheus_client import metrics as _client
        from prometheus_client.metrics_core import Metric
        from prometheus_client.utils import floatToGoString

        if self._le is None:
            self._le = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]
        metric = Metric(self.name, self.documentation, self.kind)
        name, names, created = self.name, self.labelnames, _client._use_created
        for values, child in list(self.children.items()):
            labels = dict(zip(names, values, strict=True))
            if self.kind == "counter":
                metric.add_sample(name + "_total", labels, child.value)
                if created:
                    metric.add_sample(name + "_created", labels, child.created)
            elif self.kind == "gauge":
                metric.add_sample(name, labels, child.value)
            else:
                acc = 0.0
                for le, count in zip(self._le, child.counts, strict=True):
                    acc += count
                    metric.add_sample(name + "_bucket", {**labels, "le": le}, acc)
                metric.add_sample(name + "_count", labels, acc)
                if self.bounds[0] >= 0:
                    metric.add_sample(name + "_sum", labels, child.sum)
                if created:
                    metric.add_sample(name + "_created", labels, child.created)
        return [metric]


class Families:
    """The in-process registry: families in the order they were made, handed to a prometheus_client
    `CollectorRegistry` (with the process and platform collectors after them) at the first scrape."""

    def __init__(self) -> None:
        self.families: list[Family] = []
        self._registry: CollectorRegistry | None = None

    def register(self, fam: Family) -> None:
        if self._registry is not None:
            self._registry.register(fam)
        self.families.append(fam)

    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            for fam in self.families:
                registry.register(fam)
            registry.register(PROCESS_COLLECTOR)
            registry.register(PLATFORM_COLLECTOR)
            self._registry = registry
        return self._registry


def family(registry: Families | None, name: str, documentation: str, kind: Kind,
           labelnames: Sequence[str] = (), *, buckets: Sequence[float] = (),
           multiprocess_mode: GaugeMode = "all") -> Any:
    """A metric: a lock-free Family registered in `registry`, or with no registry (multi-process mode)
    prometheus_client's own, whose values go to the per-process files. An unlabelled metric is returned as its one
    series (`inc`, `set`, ...), labelled ones answer `labels(...)` with a series, as prometheus_client's do."""
    if registry is None:
        from prometheus_client import Counter, Gauge, Histogram

        if kind == "counter":
            return Counter(name, documentation, labelnames, registry=None)
        if kind == "histogram":
            return Histogram(name, documentation, labelnames, registry=None, buckets=buckets)
        return Gauge(name, documentation, labelnames, registry=None, multiprocess_mode=multiprocess_mode)
    fam = Family(name, documentation, kind, labelnames, buckets)
    registry.register(fam)
    return fam.labels() if not labelnames else fam


__all__ = ["CounterSeries", "Families", "Family", "GaugeMode", "GaugeSeries", "HistogramSeries", "family"]
