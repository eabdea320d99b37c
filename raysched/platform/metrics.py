"""Controller metrics exported through `ray.util.metrics` (Ray's Prometheus endpoint, dashboard)."""

from __future__ import annotations

from collections.abc import Sequence

from ray.util.metrics import Counter, Gauge, Histogram

# actual / predicted duration: 1.0 is a perfect prediction.
_RATIO_BOUNDARIES = [0.25, 0.5, 0.67, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0, 4.0]


class ControllerMetrics:
    """The controller's gauges, counters and histograms (names prefixed `raysched_`)."""

    def __init__(self) -> None:
        self.queue_length = Gauge("raysched_queue_length", description="Jobs waiting in the queue")
        self.running = Gauge("raysched_running_jobs", description="Jobs placed or running")
        self.decisions = Counter("raysched_decisions_total", description="Decisions applied",
                                 tag_keys=("policy", "action"))
        self.migrations = Counter("raysched_migrations_total", description="Jobs migrated",
                                  tag_keys=("policy",))
        self.finished = Counter("raysched_jobs_finished_total", description="Jobs finished",
                                tag_keys=("state",))
        self.predicted_duration = Histogram(
            "raysched_predicted_duration_s", description="Predicted run time at placement",
            boundaries=[5, 10, 20, 40, 80, 160, 320, 640, 1280])
        self.actual_duration = Histogram(
            "raysched_actual_duration_s", description="Actual run time of finished jobs",
            boundaries=[5, 10, 20, 40, 80, 160, 320, 640, 1280])
        self.prediction_ratio = Histogram(
            "raysched_actual_over_predicted", description="Actual / predicted run time",
            boundaries=_RATIO_BOUNDARIES)
        self.node_load = Gauge("raysched_node_predicted_load",
                               description="CPUs allocated by raysched / CPUs on the node",
                               tag_keys=("node",))

    def round(self, queued: int, running: int, loads: Sequence[tuple[str, float]]) -> None:
        self.queue_length.set(queued)
        self.running.set(running)
        for node_id, load in loads:
            self.node_load.set(load, tags={"node": node_id[:8]})

    def decision(self, policy: str, action: str) -> None:
        self.decisions.inc(tags={"policy": policy, "action": action})
        if action == "migrate":
            self.migrations.inc(tags={"policy": policy})

    def job_finished(self, state: str, actual_s: float | None, predicted_s: float | None) -> None:
        self.finished.inc(tags={"state": state})
        if actual_s is not None:
            self.actual_duration.observe(actual_s)
            if predicted_s:
                self.prediction_ratio.observe(actual_s / predicted_s)
