"""The proxy's live-loop series: LiveLoop.stats() (cumulative) as counters, the queue depth as a gauge."""

from __future__ import annotations

from prometheus_client import generate_latest

from router.server.metrics import RouterMetrics


def test_live_stats_become_counters_and_gauges() -> None:
    metrics = RouterMetrics()
    metrics.set_live_stats({"queued_grade": 3, "shed": 1, "in_flight": 2}, 7)
    metrics.set_live_stats({"queued_grade": 5, "shed": 1, "queued_shadow": 4, "in_flight": 0}, None)
    text = generate_latest(metrics.registry).decode()
    assert 'router_live_enqueue_total{outcome="queued_grade"} 5.0' in text  # the total, not the sum of reads
    assert 'router_live_enqueue_total{outcome="shed"} 1.0' in text
    assert 'router_live_enqueue_total{outcome="queued_shadow"} 4.0' in text
    assert "router_live_enqueue_in_flight 0.0" in text
    assert "router_live_queue_depth 7.0" in text  # unknown at the second read: the last known depth stays
