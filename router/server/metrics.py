"""Prometheus metrics of one app (a registry of its own, so apps in one process do not collide).

With several workers, each process counts its own; set PROMETHEUS_MULTIPROC_DIR to a shared empty
folder before start-up and `/metrics` aggregates them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
DIFFICULTY_BUCKETS = tuple(i / 10 for i in range(1, 11))
COST_BUCKETS = (1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0)
APP_LABELS_MAX = 20


class AppLabels:
    """The `app` label of a request, from a bounded set: Prometheus keeps one series per label value.

    With ROUTER_METRICS_APPS (comma-separated) only those names are kept; otherwise the first
    APP_LABELS_MAX distinct apps this process sees. Everything else is `other`; no app is `none`.
    """

    def __init__(self, allowed: frozenset[str] | None = None, limit: int = APP_LABELS_MAX) -> None:
        self.allowed = allowed
        self.limit = limit
        self._seen: set[str] = set()

    @classmethod
    def from_environment(cls) -> AppLabels:
        """The allow-list in ROUTER_METRICS_APPS, or first-seen up to APP_LABELS_MAX."""
        names = os.environ.get("ROUTER_METRICS_APPS", "")
        allowed = frozenset(name.strip() for name in names.split(",") if name.strip())
        return cls(allowed or None)

    def label(self, app: str | None) -> str:
        """The label value for `app`."""
        if not app:
            return "none"
        if self.allowed is not None:
            return app if app in self.allowed else "other"
        if app in self._seen:
            return app
        if len(self._seen) < self.limit:
            self._seen.add(app)
            return app
        return "other"


class RouterMetrics:
    """Every metric the proxy exports, prefixed `router_`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "router_requests", "Chat requests by answering tier and HTTP status.", ["tier", "status"], registry=registry
        )
        self.difficulty = Histogram(
            "router_difficulty", "Classifier score of routed requests.", buckets=DIFFICULTY_BUCKETS, registry=registry
        )
        self.tokens = Counter(
            "router_tokens", "Tokens spent, sub-calls included.", ["tier", "kind"], registry=registry
        )
        self.cost = Counter("router_cost_usd", "USD spent, sub-calls included.", ["tier"], registry=registry)
        self.app_cost = Counter(
            "router_app_cost_usd",
            "USD spent by tier and calling app (metadata.app or the key's app tag); apps beyond "
            "ROUTER_METRICS_APPS (or the first 20 seen, when unset) count as `other`, none as `none`.",
            ["tier", "app"], registry=registry,
        )
        self.request_cost = Histogram(
            "router_request_cost_usd", "USD per request, sub-calls included.", ["tier"],
            buckets=COST_BUCKETS, registry=registry,
        )
        self.first_token = Histogram(
            "router_time_to_first_token_seconds",
            "Streamed requests: time from the request to the first piece of the answer (classification included).",
            ["tier"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.apps = AppLabels.from_environment()
        self.latency = Histogram(
            "router_request_latency_seconds", "Time from request to full answer.", ["tier"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.overhead = Histogram(
            "router_overhead_seconds", "Time spent in the router itself (request minus model calls).",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.classifier_latency = Histogram(
            "router_classifier_latency_seconds", "Wait for a difficulty score (queue and batch).",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.classifier_batch = Histogram(
            "router_classifier_batch_size", "Prompts embedded per classifier call.",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=registry,
        )
        self.classifier_process = Counter(
            "router_classifier_process",
            "Classifier child processes (server.classifier_process) by event: started, failed (could not start: "
            "batches are scored in a thread), died (replaced; its batch was scored in a thread).",
            ["event"], registry=registry,
        )
        self.gc_pause = Histogram(
            "router_gc_pause_seconds", "Garbage-collection pauses by generation.", ["generation"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1), registry=registry,
        )
        self.errors = Counter("router_errors", "Error responses by code.", ["code"], registry=registry)
        self.events = Counter(
            "router_routing_events", "Fallbacks and escalations between tiers.", ["kind", "source", "target"],
            registry=registry,
        )
        # Gauges in multiprocess mode: summed (or maxed) over the living workers, not one series per pid.
        self.policy = Gauge(
            "router_policy_info", "The live policy version (value 1).", ["version"], registry=registry,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "router_ready", "Worker processes with their models loaded, serving requests (1 with one process).",
            registry=registry, multiprocess_mode="livesum",
        )
        self.ledger = Gauge(
            "router_ledger", "Ledger counters: recorded, queued, dropped (buffer overflow), outages...", ["stat"],
            registry=registry, multiprocess_mode="livesum",
        )
        self.redis_failures = Counter(
            "router_redis_failures",
            "Request-path Redis calls that failed or timed out, by operation (api_key, rate_limit, budget, "
            "budget_settle) and action (served: failed open, refused: 503, lost: not recorded).",
            ["operation", "action"], registry=registry,
        )
        self.policy_reloads = Counter(
            "router_policy_reloads",
            "Edits of router.yaml read by the watcher, by outcome (applied, invalid, auth_downgrade_refused).",
            ["outcome"], registry=registry,
        )
        self.classifier_stages = Counter(
            "router_classifier_stage",
            "Queries scored, by the stage whose score the policy read: first (the static first stage alone, far "
            "from every threshold) or second (the policy's classifier). Only with classifier.first_stage set.",
            ["stage"], registry=registry,
        )
        # The live loop (docs/live.md): what became of each sampled job, and the queue it feeds.
        self.live_jobs = Counter(
            "router_live_enqueue",
            "Sampled live jobs by outcome: queued_grade, queued_explore, queued_shadow, shed (queue full or too "
            "many in flight), over_budget, enqueue_failed (Redis slow or down), no_redis; and shadow_lookup_failed "
            "(looking up a shadowed candidate policy failed).",
            ["outcome"], registry=registry,
        )
        self.live_in_flight = Gauge(
            "router_live_enqueue_in_flight", "Live enqueues waiting for Redis.", registry=registry,
            multiprocess_mode="livesum",
        )
        self.live_depth = Gauge(
            "router_live_queue_depth",
            "Jobs in the live queue (waiting or being worked on), fleet-wide; read from Redis at each scrape.",
            registry=registry, multiprocess_mode="livemax",
        )
        self._live_seen: dict[str, int] = {}
        self._reload_stats: Callable[[], Mapping[str, int]] | None = None
        self._stage_stats: Callable[[], Mapping[str, int]] | None = None
        self._stages_seen: dict[str, int] = {}
        self._reloads_seen: dict[str, int] = {}
        self._policy_version: str | None = None
        # Filled by a gc callback, which must not take the metric locks; drained at each scrape.
        self.gc_samples: deque[tuple[int, float]] = deque(maxlen=100_000)

    def set_policy(self, version: str) -> None:
        """Show `version` as the live policy."""
        if version != self._policy_version:
            if self._policy_version is not None:
                self.policy.remove(self._policy_version)
            self.policy.labels(version).set(1)
            self._policy_version = version

    def count_error(self, code: str) -> None:
        """One error response."""
        self.errors.labels(code).inc()

    def count_redis_failure(self, operation: str, action: str) -> None:
        """One request-path Redis call that failed (router.redis_guard)."""
        self.redis_failures.labels(operation, action).inc()

    def track_policy_reloads(self, stats: Callable[[], Mapping[str, int]]) -> None:
        """Publish the policy store's reload outcomes (read at each scrape: the store knows no metrics)."""
        self._reload_stats = stats
        self._sync_reloads()

    def _sync_reloads(self) -> None:
        if self._reload_stats is None:
            return
        for outcome, total in self._reload_stats().items():
            counter = self.policy_reloads.labels(outcome)
            new = total - self._reloads_seen.get(outcome, 0)
            if new > 0:
                counter.inc(new)
                self._reloads_seen[outcome] = total

    def track_classifier_stages(self, stats: Callable[[], Mapping[str, int]]) -> None:
        """Publish how many queries each scoring stage decided (read at each scrape from the scorers)."""
        self._stage_stats = stats

    def _sync_stages(self) -> None:
        if self._stage_stats is None:
            return
        for stage, total in self._stage_stats().items():
            new = total - self._stages_seen.get(stage, 0)
            if new > 0:
                self.classifier_stages.labels(stage).inc(new)
                self._stages_seen[stage] = total

    def set_ledger_stats(self, stats: Mapping[str, int]) -> None:
        """Publish the ledger's own counters (a write lost to a full buffer shows here as `dropped`)."""
        for name, value in stats.items():
            self.ledger.labels(name).set(value)

    def set_live_stats(self, stats: Mapping[str, int], depth: int | None) -> None:
        """Publish the live loop's counters (LiveLoop.stats(), cumulative) and the queue depth (None: unknown)."""
        for name, total in stats.items():
            if name == "in_flight":
                self.live_in_flight.set(total)
                continue
            new = total - self._live_seen.get(name, 0)
            if new > 0:
                self.live_jobs.labels(name).inc(new)
                self._live_seen[name] = total
        if depth is not None:
            self.live_depth.set(depth)

    @staticmethod
    def process_exited() -> None:
        """In multiprocess mode, drop this process's live gauges (a worker that stops)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def exposition(self) -> bytes:
        """The text format, all workers' metrics when in multiprocess mode."""
        self._sync_reloads()
        self._sync_stages()
        while self.gc_samples:
            generation, seconds = self.gc_samples.popleft()
            self.gc_pause.labels(str(generation)).observe(seconds)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
