"""Prometheus metrics, for `GET /metrics` (backend/api/metrics.py).

What is counted as it happens (runs finished, run and step durations, the wait for a slot,
health-check latency and failures) is observed through the parts' listeners; what is a
state (workers by status and pool, slots, queues, runs stored, log lines written, store
faults) is read when scraped, from what the server holds anyway: the fleet as last
published, the pools' figures, one grouped count of runs.

Label values are bounded: runbooks, environments, pools and statuses are few and named
by people; a failed check's reason is one of CHECK_REASONS, never its text; no run id.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import func, select

from backend import __version__
from backend.health.results import Outcome
from backend.runs.launch import resolve_pool
from backend.store.db import pass_failed
from backend.store.models import HEALTHY, WARNING, Run, RunStep, aware
from wire.runbook import RunbookDef

if TYPE_CHECKING:
    from backend.core import Backend

log = logging.getLogger(__name__)
# Each counter's and histogram's creation time, a series beside each of theirs: twice the
# series for what no dashboard uses.
disable_created_metrics()

# Few buckets: a histogram by pool is a series per bucket and pool (300 pools, 10 each).
RUN_BUCKETS = (10, 60, 300, 900, 1800, 3600, 10800)
WAIT_BUCKETS = (0.5, 5, 30, 120, 600, 1800)
CHECK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
CHECK_REASONS = ("host_key", "timeout", "refused", "auth", "unreachable", "check_failed",
                 "custom_check", "disk", "load", "error")


def check_reason(outcome: Outcome) -> str:
    """A failed check's reason as one of CHECK_REASONS (its text is unbounded)."""
    said = outcome.reason.lower()
    if outcome.presented_host_key:
        return "host_key"
    if outcome.unreachable:
        if "timed out" in said or "timeout" in said:
            return "timeout"
        if "refused" in said:
            return "refused"
        if "auth" in said or "permission denied" in said:
            return "auth"
        return "unreachable"
    if "custom" in said:
        return "custom_check"
    if outcome.status == WARNING:
        return "disk" if "disk" in said else "load" if "load" in said else "check_failed"
    if "exited" in said:
        return "check_failed"
    return "error"


class Metrics:
    """The server's metrics in a registry of its own (one per server, tests hold many)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self.runs_finished = Counter(
            "workdeck_runs_finished", "Runs this node finished, by how they ended.",
            ["runbook", "environment", "status"], registry=registry)
        self.run_duration = Histogram(
            "workdeck_run_duration_seconds", "How long runs took, launch to end.",
            ["runbook", "environment", "status"], buckets=RUN_BUCKETS, registry=registry)
        self.step_duration = Histogram(
            "workdeck_step_duration_seconds", "How long steps ran on their worker, by "
            "pool.", ["pool"], buckets=RUN_BUCKETS, registry=registry)
        self.queue_wait = Histogram(
            "workdeck_queue_wait_seconds", "How long steps waited for a slot in their pool.",
            ["pool"], buckets=WAIT_BUCKETS, registry=registry)
        self.check_latency = Histogram(
            "workdeck_check_latency_seconds", "Health checks' round trip (a check that "
            "reached its worker).", buckets=CHECK_BUCKETS, registry=registry)
        self.check_failures = Counter(
            "workdeck_check_failures", "Health checks that found a worker not healthy, by "
            "status and reason.", ["status", "reason"], registry=registry)
        registry.register(_State(backend))
        self._pending: set[asyncio.Task[None]] = set()

    def render(self) -> bytes:
        """The text format (call in a thread: the state is read from the store)."""
        return exposition(self.registry)

    # ---------------------------------------------------------------- observed

    def checked(self, outcome: Outcome) -> None:
        if outcome.latency_ms is not None:
            self.check_latency.observe(outcome.latency_ms / 1000)
        if outcome.status != HEALTHY:
            self.check_failures.labels(outcome.status, check_reason(outcome)).inc()

    def waited(self, pool: str, seconds: float) -> None:
        self.queue_wait.labels(pool).observe(max(seconds, 0.0))

    def run_finished(self, run_id: int) -> None:
        """Observed from the store in the background: the run's end is not slowed."""
        task = asyncio.get_running_loop().create_task(self._observe_run(run_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _observe_run(self, run_id: int) -> None:
        try:
            await asyncio.to_thread(self._observe_run_now, run_id)
        except Exception:  # a figure lost must not disturb anything else
            pass_failed(log, "run %s was not counted in the metrics", run_id)

    def _observe_run_now(self, run_id: int) -> None:
        with self.backend.store.read() as session:
            run = session.get(Run, run_id)
            steps = session.exec(select(RunStep).where(RunStep.run_id == run_id)).all()
        if run is None or run.finished_at is None:
            return
        labels = (run.runbook, run.environment, run.status)
        self.runs_finished.labels(*labels).inc()
        self.run_duration.labels(*labels).observe(_seconds(run.created_at, run.finished_at))
        definition = RunbookDef.model_validate_json(run.definition)
        for step in steps:
            if step.started_at is None or step.finished_at is None:
                continue
            spec = definition.steps[step.position - 1]
            if spec.manual is not None:
                continue
            try:
                pool = resolve_pool(definition, spec, run.environment)
            except Exception:
                continue
            self.step_duration.labels(pool).observe(
                _seconds(step.started_at, step.finished_at))


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format, as prometheus-client's generate_latest
    writes it, about twice as fast: with ten thousand workers in 300 pools there are ten
    thousand series, and its per-sample formatting alone took 50 ms."""
    out: list[str] = []
    append = out.append
    for family in registry.collect():
        name, kind = family.name, family.type
        if kind == "counter":
            name += "_total"
        elif kind == "unknown":
            kind = "untyped"
        helped = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        append(f"# HELP {name} {helped}\n# TYPE {name} {kind}\n")
        for sample in family.samples:
            labels = sample.labels
            if labels:
                append(sample.name + "{" + ",".join(
                    f'{key}="{_escaped(str(text))}"' for key, text in labels.items())
                    + "} " + _number(sample.value) + "\n")
            else:
                append(f"{sample.name} {_number(sample.value)}\n")
    return "".join(out).encode()


def _escaped(text: str) -> str:
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return text


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    return repr(float(value))


def _seconds(start: datetime, end: datetime) -> float:
    return max((aware(end) - aware(start)).total_seconds(), 0.0)


class _State(Collector):
    """What is a state, read when scraped."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        backend = self.backend
        info = GaugeMetricFamily("workdeck_info", "This server: its version and node name.",
                                 labels=["version", "node"])
        info.add_metric([__version__, backend.nodes.name], 1)
        yield info

        workers = GaugeMetricFamily("workdeck_workers", "Workers by pool and status (a "
                                    "worker in two pools counts in both).",
                                    labels=["pool", "status"])
        counts: dict[tuple[str, str], int] = {}
        for worker in list(backend.bus.latest.get("worker", {}).values()):
            status = worker.get("status") or "unknown"
            for pool in worker.get("pools") or [""]:
                counts[(pool, status)] = counts.get((pool, status), 0) + 1
        for (pool, status), count in sorted(counts.items()):
            workers.add_metric([pool, status], count)
        yield workers

        # As the pools' sampler reads them: the members at most a second behind a health
        # change (read exact, ten thousand workers' membership would be read at every
        # scrape of a busy fleet).
        figures = backend.usage.figures.current(backend.leases.queued_by_pool())
        families = {
            "leased": GaugeMetricFamily("workdeck_pool_slots_in_use",
                                        "Slots held by steps, by pool.", labels=["pool"]),
            "capacity": GaugeMetricFamily("workdeck_pool_slots_capacity",
                                          "Slots the pool's able members offer.",
                                          labels=["pool"]),
            "queued": GaugeMetricFamily("workdeck_pool_queue_length",
                                        "Steps waiting for a slot, by pool.", labels=["pool"]),
            "healthy_workers": GaugeMetricFamily("workdeck_pool_healthy_workers",
                                                 "Healthy members, by pool.",
                                                 labels=["pool"]),
        }
        for name, figure in sorted(figures.items()):
            for key, family in families.items():
                family.add_metric([name], figure[key])
        yield from families.values()

        runs = GaugeMetricFamily("workdeck_runs", "Runs kept in the store, by runbook, "
                                 "environment and status.",
                                 labels=["runbook", "environment", "status"])
        with backend.store.read() as session:
            grouped = session.exec(select(Run.runbook, Run.environment, Run.status,
                                          func.count()).group_by(
                Run.runbook, Run.environment, Run.status)).all()
        for runbook, environment, status, count in sorted(grouped):
            runs.add_metric([runbook, environment, status], count)
        yield runs
        executing = GaugeMetricFamily("workdeck_runs_executing",
                                      "Runs this node executes now.")
        executing.add_metric([], backend.runs.under_way())
        yield executing

        hub = backend.hub
        lines = CounterMetricFamily("workdeck_log_lines", "Log lines this node stored.")
        lines.add_metric([], hub.lines_written)
        yield lines
        written = CounterMetricFamily("workdeck_log_bytes", "Bytes of log this node stored.")
        written.add_metric([], hub.bytes_written)
        yield written

        store = backend.store
        faults = CounterMetricFamily("workdeck_store_faults", "Store operations that failed "
                                     "for the store's own sake, by kind.", labels=["kind"])
        for kind, count in sorted(store.fault_counts.items()):
            faults.add_metric([kind], count)
        yield faults
        refusing = GaugeMetricFamily("workdeck_store_refusing", "1 while the store refuses "
                                     "work (a full disk, a database gone).")
        refusing.add_metric([], 1 if store.fault else 0)
        yield refusing

