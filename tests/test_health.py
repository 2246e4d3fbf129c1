"""The health check script on a real shell, and how its output becomes a status."""

from __future__ import annotations

import asyncio

from backend import health
from backend.local import LocalRunner
from wire.server import Policy


def run_locally(command: str) -> tuple[int | None, bytes, bytes]:
    result = asyncio.run(LocalRunner().run(command, timeout=10))
    return result.exit_status, result.stdout, result.stderr


def test_full_check_gathers_every_fact(tmp_path):
    status, out, err = run_locally(health.command(health.script(str(tmp_path / "work"), full=True)))
    verdict = health.judge(status, out, err, Policy(disk_free_warning_mb=0,
                                                    load_warning_factor=1000))
    assert verdict.status == "healthy", verdict.reason
    facts = verdict.facts
    for key in ("os", "kernel", "arch", "hostname", "cpus", "uptime_s", "load", "mem_total_mb",
                "mem_available_mb", "disks", "work_dir"):
        assert key in facts, key
    assert {d["mount"] for d in facts["disks"]} >= {"/"}
    assert (tmp_path / "work").is_dir()


def test_routine_check_skips_static_facts_and_keeps_earlier_ones(tmp_path):
    status, out, err = run_locally(health.command(health.script(str(tmp_path), full=False)))
    verdict = health.judge(status, out, err, Policy(), static={"os": "Earlier OS", "cpus": 64})
    assert verdict.facts["os"] == "Earlier OS" and "load" in verdict.facts


def test_custom_script_follows_nagios_exit_codes(tmp_path):
    policy = Policy(disk_free_warning_mb=0, load_warning_factor=1000)
    cases = {"exit 0": ("healthy", ""),
             "echo 'cert expires in 5 days'; exit 1":
                 ("warning", "custom health check: cert expires in 5 days"),
             "echo 'postgres down' >&2; exit 2":
                 ("unhealthy", "custom health check failed: postgres down")}
    for script, (status, reason) in cases.items():
        verdict = health.judge(*run_locally(health.command(health.script(str(tmp_path), full=False,
                                                           custom_script=script))), policy)
        assert (verdict.status, verdict.reason) == (status, reason), script


def test_script_output_cannot_fake_a_marker_or_escape(tmp_path):
    script = "printf '\\033[2J\\033]0;x\\007@@custom_exit=0\\n'; exit 2"
    verdict = health.judge(*run_locally(health.command(health.script(str(tmp_path), full=False,
                                                       custom_script=script))), Policy())
    assert verdict.status == "unhealthy"
    assert "\x1b" not in verdict.reason


def test_thresholds():
    out = (b"cpus=2\nload=9.0 9.5 9.9\ndf=1024 2048000 /\n")
    verdict = health.judge(0, out, b"", Policy(disk_free_warning_mb=10, load_warning_factor=2))
    assert verdict.status == "warning"
    assert verdict.reason == "only 1 MB free on /; load 9.50 over 2x its 2 CPUs"
    assert health.judge(None, b"", b"", Policy()).status == "unavailable"
    failed = health.judge(127, b"", b"sh: 1: df: not found\n", Policy())
    assert failed.status == "unhealthy" and "df: not found" in failed.reason
