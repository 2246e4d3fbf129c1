"""What a health check runs on a worker, and how its output becomes a status and facts."""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass, field
from typing import Any

from backend.store.models import HEALTHY, UNAVAILABLE, UNHEALTHY, WARNING
from wire.server import Policy
from wire.text import clean_line

# One POSIX sh script, one SSH session per check. Static facts (OS, kernel, CPUs) and
# free disk are gathered only when asked, and the rest is read with shell builtins, so
# that a routine check forks nothing on the worker beyond the shell itself.
FACTS_FUNCTION = r"""
__wd_check() {
# Output is gathered in __wd_o and written once: each write to stdout would wake sshd on
# the worker for an SSH packet of its own, to be decrypted by the server. In a check
# shell (__wd_shell set) it is left for the shell's end marker to write with it.
__wd_o=""
w="$1"; case "$w" in /*) ;; *) w="$HOME/$w" ;; esac
[ -d "$w" ] || mkdir -p "$w" 2>/dev/null
if [ "$2" = 1 ]; then
  if [ -r /etc/os-release ]; then say "os=$(. /etc/os-release; echo "${PRETTY_NAME:-$NAME}")"; fi
  say "uname=$(uname -snrm)"
  if read c < /sys/devices/system/cpu/online; then say "cpus_online=$c"
  else say "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"; fi 2>/dev/null
  say "login_shell=${SHELL:-}"
fi
if [ "$6" = 1 ]; then
  # The container engine a step in an image would use: one that answers, as the step
  # command asks (backend.transport.remote.ENGINES), and its version.
  if command -v podman >/dev/null 2>&1 &&
     __wd_v=$(podman version --format '{{.Client.Version}}' 2>/dev/null); then
    say "engine=podman $__wd_v"
  elif command -v docker >/dev/null 2>&1 &&
     __wd_v=$(docker version --format '{{.Server.Version}}' 2>/dev/null); then
    say "engine=docker $__wd_v"
  else say "engine=none"; fi
  unset __wd_v
fi
if read up idle < /proc/uptime; then say "uptime=$up"; fi 2>/dev/null
if read l1 l5 l15 rest < /proc/loadavg; then say "load=$l1 $l5 $l15"; fi 2>/dev/null
if [ -r /proc/meminfo ]; then
  # sh reads a file a byte per system call: stop at MemAvailable (the third line), not
  # fifty lines later (that was four fifths of a routine check's cost on the worker).
  while read k v u; do
    case "$k" in
      MemTotal:) say "mem_total_kb=$v" ;;
      MemAvailable:) say "mem_available_kb=$v"; break ;;
    esac
  done < /proc/meminfo
fi
say "work_dir=$w"
if [ "$4" = 1 ]; then
  say "$(df -Pk / "$w" 2>/dev/null | { read header; while read fs size used avail pct mnt; do
    echo "df=$avail $size $mnt"; done; })"
fi
if [ -n "$3" ]; then
  printf '%s' "$__wd_o"; __wd_o=""  # before what the custom script writes itself
  echo "@@custom"
  if ! command -v bash >/dev/null 2>&1; then echo "bash is not installed"; __wd_rc=1
  elif command -v setsid >/dev/null 2>&1; then
    # In a process group of its own, with no stdin (it must not read the next check),
    # and a watchdog that kills the whole group at the time limit.
    setsid bash -c "$3" </dev/null 2>&1 &
    __wd_p=$!
    sh -c 'sleep "$1" & s=$!; trap "kill $s 2>/dev/null; exit 0" TERM; wait $s;
      kill -KILL -"$2" 2>/dev/null && echo "@@custom_timeout"' sh "$5" "$__wd_p" </dev/null &
    __wd_w=$!
    wait "$__wd_p"; __wd_rc=$?
    kill -TERM "$__wd_w" 2>/dev/null; wait "$__wd_w" 2>/dev/null
    kill -KILL -"$__wd_p" 2>/dev/null  # whatever it left running in the background
  else bash -c "$3" </dev/null 2>&1; __wd_rc=$?
  fi
  echo "@@custom_exit=$__wd_rc"
  unset __wd_p __wd_w __wd_rc
fi
[ -n "${__wd_shell-}" ] || { printf '%s' "$__wd_o"; __wd_o=""; }
}
say() { __wd_o="$__wd_o$1
"; }
"""

TIMED_OUT = -1  # the custom script's "exit status" when its watchdog killed it

STATIC_FACTS = ("os", "kernel", "arch", "hostname", "cpus", "login_shell", "container_engine")


def custom_limit(timeout_s: float) -> float:
    """The custom script's own time limit: inside the check's, so that a hung script is
    reported as such (and killed) rather than the whole worker as unreachable."""
    return round(max(0.5, timeout_s * 0.75), 2)


@dataclass(frozen=True)
class CheckScript:
    """A check as a call of a shell function, and the functions it needs: a check shell
    is sent the definitions once and then only the call, not 2 KB to send, encrypt,
    decrypt and parse again for every check."""

    definitions: str
    call: str

    def whole(self) -> str:
        return self.definitions + self.call

    def command(self) -> str:
        """The check as one command line for any login shell (fish, csh and sh alike)."""
        return "exec /bin/sh -c " + shlex.quote(self.whole())


@functools.lru_cache(maxsize=4096)  # a fleet has few work folders: made once, not per check
def script(work_dir: str, *, full: bool, custom_script: str = "", disk: bool = True,
           custom_timeout_s: float = 7.5, engine: bool | None = None) -> CheckScript:
    """The check for a POSIX sh (the worker's check shell, or a shell of its own); it
    leaves nothing behind in that shell but its functions and a few variables."""
    engine = full if engine is None else engine  # which container engine answers
    args = [work_dir, "1" if full else "0", custom_script, "1" if disk else "0",
            f"{custom_timeout_s:g}", "1" if engine else "0"]
    return CheckScript(FACTS_FUNCTION, "__wd_check " + " ".join(shlex.quote(a) for a in args))


def disk_due(checks_since: int, last_free_mb: float | None, policy: Policy) -> bool:
    """Whether this check should measure free disk again.

    Free space changes slowly, and `df` is the one process a routine check would fork
    on the worker: it runs every few checks, and every time when the disk is anywhere
    near the warning threshold.
    """
    if last_free_mb is None or checks_since >= DISK_EVERY:
        return True
    return last_free_mb < 4 * policy.disk_free_warning_mb


DISK_EVERY = 5


@dataclass
class Verdict:
    status: str
    reason: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def load1(self) -> float | None:
        load = self.facts.get("load")
        return load[0] if load else None

    @property
    def disk_free_mb(self) -> float | None:
        disks = self.facts.get("disks") or []
        return min((d["free_mb"] for d in disks), default=None)


def parse_facts(stdout: bytes) -> tuple[dict[str, Any], list[str], int | None]:
    """Facts, the custom script's output lines, and its exit status (None when not run)."""
    facts: dict[str, Any] = {}
    custom: list[str] = []
    custom_exit: int | None = None
    in_custom = False
    timed_out = False
    disks: dict[str, dict[str, Any]] = {}
    for raw in stdout.split(b"\n"):
        line = clean_line(raw, 500)
        if in_custom:
            if line.startswith("@@custom_exit="):
                custom_exit = _int(line.partition("=")[2])
                if timed_out:
                    custom_exit = TIMED_OUT
            elif line == "@@custom_timeout":
                timed_out = True
            elif line:
                custom.append(line)
            continue
        if line == "@@custom":
            in_custom = True
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key in ("os", "kernel", "arch", "hostname", "work_dir", "login_shell"):
            facts[key] = value
        elif key == "uname":  # kernel name, host name, kernel release, machine
            parts = value.split()
            if len(parts) == 4:
                facts["kernel"] = f"{parts[0]} {parts[2]}"
                facts["hostname"], facts["arch"] = parts[1], parts[3]
        elif key == "engine":  # "podman 4.3.1"; "none" is read as an empty one
            facts["container_engine"] = "" if value == "none" else value
        elif key == "cpus":
            facts["cpus"] = _int(value)
        elif key == "cpus_online":
            facts["cpus"] = _cpu_count(value)
        elif key == "uptime":
            facts["uptime_s"] = _float(value)
        elif key == "load":
            parts = [_float(p) for p in value.split()[:3]]
            if len(parts) == 3 and None not in parts:
                facts["load"] = parts
        elif key in ("mem_total_kb", "mem_available_kb"):
            kb = _int(value)
            if kb is not None:
                facts[key.replace("_kb", "_mb")] = round(kb / 1024, 1)
        elif key == "df":
            parts = value.split(maxsplit=2)
            if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
                disks[parts[2]] = {
                    "mount": parts[2],
                    "free_mb": round(int(parts[0]) / 1024, 1),
                    "size_mb": round(int(parts[1]) / 1024, 1),
                }
    if disks:
        facts["disks"] = list(disks.values())
    return facts, custom, custom_exit


def judge(exit_status: int | None, stdout: bytes, stderr: bytes, policy: Policy,
          static: dict[str, Any] | None = None) -> Verdict:
    """Turn one check's output into a status, a reason and facts."""
    if exit_status is None:
        return Verdict(UNAVAILABLE, "the check's session ended without an exit status")
    facts, custom, custom_exit = parse_facts(stdout)
    for key, value in (static or {}).items():
        facts.setdefault(key, value)
    if exit_status != 0 and custom_exit is None:
        detail = clean_line(stderr.strip().split(b"\n")[-1], 200) if stderr.strip() else ""
        return Verdict(UNHEALTHY, f"the health check exited {exit_status}"
                       + (f": {detail}" if detail else ""), facts)
    if custom_exit == TIMED_OUT:
        return Verdict(UNHEALTHY, "custom health check timed out (its time limit is 3/4 of "
                       "the check's timeout); it was killed", facts)
    if custom_exit is not None and custom_exit not in (0, 1):
        said = custom[-1] if custom else f"exit status {custom_exit}"
        return Verdict(UNHEALTHY, f"custom health check failed: {said}", facts)

    warnings = []
    if custom_exit == 1:
        warnings.append(f"custom health check: {custom[-1] if custom else 'warning'}")
    for disk in facts.get("disks", []):
        if disk["free_mb"] < policy.disk_free_warning_mb:
            warnings.append(f"only {_size(disk['free_mb'])} free on {disk['mount']}")
    cpus, load = facts.get("cpus"), facts.get("load")
    # The 5-minute load: a one-minute spike should not flap a worker to warning.
    if cpus and load and load[1] > policy.load_warning_factor * cpus:
        warnings.append(
            f"load {load[1]:.2f} over {policy.load_warning_factor:g}x its {cpus} CPUs"
        )
    if warnings:
        return Verdict(WARNING, "; ".join(warnings), facts)
    return Verdict(HEALTHY, "", facts)


def _size(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _cpu_count(ranges: str) -> int | None:
    """How many CPUs a list such as `0-3,8,10-11` (Linux's cpu/online) names."""
    count = 0
    try:
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            count += int(last or first) - int(first) + 1
    except ValueError:
        return None
    return count or None


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None
