"""Prometheus metrics of a worker process, served by `router worker --metrics-port`.

Counters are per process (sum them across workers in PromQL, as for any fleet); the queue depth
gauge and the shed counter are fleet-wide (read from Redis), so scrape any one worker for them.
Each worker uses its own registry, so that several can live in one process (tests).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WorkerMetrics:
    """The worker's series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.depth = Gauge("router_live_queue_depth", "Jobs in the live queue (waiting or being worked on).", registry=r)
        self.shed = Gauge("router_live_queue_shed", "Jobs the proxies shed because the queue was full (fleet total).", registry=r)
        self.jobs = Counter("router_live_jobs", "Jobs handled by this worker, by outcome.", ["outcome"], registry=r)
        self.reclaimed = Counter("router_live_reclaimed", "Jobs taken over from a worker that stopped answering.", registry=r)
        self.graded = Counter("router_live_graded", "Verdicts written, by tier and source.", ["tier", "source"], registry=r)
        self.correct = Counter(
            "router_live_correct", "Sum of verdicts written (correct answers), by tier and source.", ["tier", "source"],
            registry=r,
        )
        self.explored = Counter("router_live_explored", "Exploration answers, by tier.", ["tier"], registry=r)
        self.spent = Counter("router_live_spent_usd", "USD spent by this worker, by kind.", ["kind"], registry=r)
        self.shadowed = Counter(
            "router_live_shadow_rows", "Shadowed requests written, by whether the candidate chose the live plan "
            "(same) or not (different).", ["plan"], registry=r,
        )
