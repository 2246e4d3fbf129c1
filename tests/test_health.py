"""The health check script on a real shell, and how its output becomes a status."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time

from backend.health import probe
from backend.transport.local import LocalRunner
from wire.server import Policy


def run_locally(command: str) -> tuple[int | None, bytes, bytes]:
    result = asyncio.run(LocalRunner().run(command, timeout=10))
    return result.exit_status, result.stdout, result.stderr


def test_full_check_gathers_every_fact(tmp_path):
    status, out, err = run_locally(probe.script(str(tmp_path / "work"), full=True).command())
    verdict = probe.judge(status, out, err, Policy(disk_free_warning_mb=0,
                                                    load_warning_factor=1000))
    assert verdict.status == "healthy", verdict.reason
    facts = verdict.facts
    for key in ("os", "kernel", "arch", "hostname", "cpus", "uptime_s", "load", "mem_total_mb",
                "mem_available_mb", "disks", "work_dir", "container_engine"):
        assert key in facts, key
    assert {d["mount"] for d in facts["disks"]} >= {"/"}
    assert (tmp_path / "work").is_dir()
    # One `uname` for three facts, and the CPUs from /sys without a process.
    machine = os.uname()
    assert facts["kernel"] == f"{machine.sysname} {machine.release}"
    assert (facts["hostname"], facts["arch"]) == (machine.nodename, machine.machine)
    assert facts["cpus"] == len(os.sched_getaffinity(0)) or facts["cpus"] == os.cpu_count()


def test_cpu_lists_and_the_fallback_count():
    for listed, count in (("0", 1), ("0-3", 4), ("0-3,8,10-11", 7), ("", None), ("x", None)):
        facts, _, _ = probe.parse_facts(f"cpus_online={listed}\n".encode())
        assert facts.get("cpus") == count, listed
    assert probe.parse_facts(b"cpus=12\n")[0]["cpus"] == 12  # getconf, without /sys


def test_a_fleet_checked_at_once_reads_its_disks_a_fifth_at_a_time():
    # Disks are read one check in DISK_EVERY; workers start at their own point of that
    # cycle, so a sweep of the whole fleet never forks `df` on every worker at once.
    from backend.health.checker import _Remembered

    fleet = [_Remembered(phase=worker_id) for worker_id in range(1, 101)]
    per_sweep = []
    for _sweep in range(3 * probe.DISK_EVERY):
        reading = 0
        for memory in fleet:
            disk = probe.disk_due(memory.since_disk, memory.free_mb(), Policy(
                disk_free_warning_mb=0))
            reading += disk
            memory.remember({"disks": [{"mount": "/", "free_mb": 1e5, "size_mb": 2e5}]},
                            full=False, disk=disk)
        per_sweep.append(reading)
    assert per_sweep[0] == 100  # the first check of each reads everything
    assert max(per_sweep[1:]) <= 100 // probe.DISK_EVERY + 1, per_sweep
    assert sum(per_sweep[1:]) >= 100 * (len(per_sweep) - 2) // probe.DISK_EVERY


def test_routine_check_skips_static_facts_and_keeps_earlier_ones(tmp_path):
    status, out, err = run_locally(probe.script(str(tmp_path), full=False).command())
    verdict = probe.judge(status, out, err, Policy(), static={"os": "Earlier OS", "cpus": 64})
    assert verdict.facts["os"] == "Earlier OS" and "load" in verdict.facts


def test_custom_script_follows_nagios_exit_codes(tmp_path):
    policy = Policy(disk_free_warning_mb=0, load_warning_factor=1000)
    cases = {"exit 0": ("healthy", ""),
             "echo 'cert expires in 5 days'; exit 1":
                 ("warning", "custom health check: cert expires in 5 days"),
             "echo 'postgres down' >&2; exit 2":
                 ("unhealthy", "custom health check failed: postgres down")}
    for script, (status, reason) in cases.items():
        check = probe.script(str(tmp_path), full=False, custom_script=script)
        verdict = probe.judge(*run_locally(check.command()), policy)
        assert (verdict.status, verdict.reason) == (status, reason), script


def test_script_output_cannot_fake_a_marker_or_escape(tmp_path):
    script = "printf '\\033[2J\\033]0;x\\007@@custom_exit=0\\n'; exit 2"
    check = probe.script(str(tmp_path), full=False, custom_script=script)
    verdict = probe.judge(*run_locally(check.command()), Policy())
    assert verdict.status == "unhealthy"
    assert "\x1b" not in verdict.reason


def test_thresholds():
    out = (b"cpus=2\nload=9.0 9.5 9.9\ndf=1024 2048000 /\n")
    verdict = probe.judge(0, out, b"", Policy(disk_free_warning_mb=10, load_warning_factor=2))
    assert verdict.status == "warning"
    assert verdict.reason == "only 1 MB free on /; load 9.50 over 2x its 2 CPUs"
    assert probe.judge(None, b"", b"", Policy()).status == "unavailable"
    failed = probe.judge(127, b"", b"sh: 1: df: not found\n", Policy())
    assert failed.status == "unhealthy" and "df: not found" in failed.reason


def test_the_container_engine_is_one_that_answers(tmp_path):
    # Read as the check prints it: an engine and its version, or none that answers.
    facts, _custom, _exit = probe.parse_facts(b"engine=podman 4.3.1\n")
    assert facts["container_engine"] == "podman 4.3.1"
    assert probe.parse_facts(b"engine=none\n")[0]["container_engine"] == ""
    # A docker client with no daemon behind it is no engine.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    for tool in ("sh", "mkdir", "uname", "getconf", "df"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    check = probe.script(str(tmp_path / "work"), full=True).command()
    done = subprocess.run(["/bin/sh", "-c", check], env={"PATH": str(bin_dir),
                                                        "HOME": str(tmp_path)},
                          capture_output=True, timeout=30)
    assert probe.parse_facts(done.stdout)[0]["container_engine"] == ""


def test_a_check_made_on_demand_is_the_workers_check_for_the_interval(tmp_path, make_store):
    # A worker added and checked at once (`worker add`, `check`) was checked once more by
    # the schedule's first sight of it within two seconds: a worker stopped in between
    # was found down before any step tried it, and a step's retry never had to recheck it.
    from backend.health.checker import HealthChecker
    from backend.health.results import Outcome
    from backend.transport.reach import Target
    from backend.transport.ssh import Endpoint

    checker = HealthChecker(make_store(), reach=None, bus=None)  # type: ignore[arg-type]
    interval = checker._policy.interval_s
    new = Target(1, "w1", False, True, Endpoint("127.0.0.1"), "/tmp", None)
    checker._due_now([new])
    assert checker._due[1] - time.monotonic() <= 2.0  # first sight: soon

    checker._back_off(Outcome(1, "w1", "healthy", "", {}, 1.0, 1.0))
    assert checker._due[1] - time.monotonic() >= 0.85 * interval
    assert checker._due_now([new]) == []
    # A check that could not reach it is tried again later, as before.
    checker._back_off(Outcome(1, "w1", "unavailable", "refused", {}, None, None,
                              unreachable=True))
    assert checker._due[1] - time.monotonic() >= 0.7 * interval
