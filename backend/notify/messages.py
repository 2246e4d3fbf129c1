"""What a notification says: the JSON body describing an event, or a Slack message.

A body carries what a person needs to act without opening anything (the run, its
runbook and environment, the step that failed and why, who launched it), and a link the
console understands: typed after `:` in the console, it opens that run, worker or pool.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wire import jsontext

FAILED_STATES = ("failed", "interrupted", "cancelled")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def run_body(event: str, run: dict[str, Any], node: str) -> dict[str, Any]:
    step = next((s for s in run["steps"] if s["status"] in FAILED_STATES), None) \
        if event == "run-failed" else None
    waiting = run.get("waiting") if event == "run-waiting" else None
    return {
        "event": event, "at": _now(), "server": node, "who": run["actor"],
        "run": {"id": run["id"], "runbook": run["runbook"],
                "environment": run["environment"], "status": run["status"],
                "reason": run["reason"], "cause": run.get("cause", ""),
                "started_at": run["started_at"], "finished_at": run["finished_at"],
                "step": None if step is None else {
                    "position": step["position"], "name": step["name"],
                    "worker": step["worker"], "reason": step["reason"],
                    "exit_status": step["exit_status"]},
                "waiting": None if not waiting else {
                    "position": waiting["position"], "prompt": waiting["prompt"],
                    "actions": waiting["actions"]}},
        "link": f"run {run['id']}",
        "command": f"workdeck runs show {run['id']}",
    }


def worker_body(worker: dict[str, Any], node: str) -> dict[str, Any]:
    return {"event": "worker-unavailable", "at": _now(), "server": node, "who": "",
            "worker": {"name": worker["name"], "pools": worker.get("pools") or [],
                       "status": worker.get("status"), "reason": worker.get("reason", ""),
                       "address": f"{worker.get('host', '')}:{worker.get('port', '')}"},
            "link": f"workers {worker['name']}",
            "command": f"workdeck worker show {worker['name']}"}


def pool_body(name: str, figure: dict[str, Any], node: str) -> dict[str, Any]:
    return {"event": "pool-short", "at": _now(), "server": node, "who": "",
            "pool": {"name": name, "healthy_workers": figure["healthy_workers"],
                     "workers": figure["workers"], "capacity": figure["capacity"],
                     "leased": figure["leased"], "queued": figure["queued"]},
            "link": f"pools {name}", "command": f"workdeck pool show {name}"}


def test_body(notification: str, node: str, who: str) -> dict[str, Any]:
    return {"event": "test", "at": _now(), "server": node, "who": who,
            "notification": notification, "link": "dashboard",
            "command": "workdeck notify list"}


def encoded(body: dict[str, Any], format: str) -> bytes:
    """The bytes posted: the body, or a Slack incoming-webhook message made from it."""
    if format == "slack":
        return jsontext.dumps({"text": slack_text(body)})
    return jsontext.dumps(body)


def _mrkdwn(text: Any) -> str:
    """Slack's three characters to escape, and no mention syntax from a worker's words."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(body: dict[str, Any]) -> str:
    event = body["event"]
    if event.startswith("run-"):
        run = body["run"]
        head = (f"Run {run['id']} *{_mrkdwn(run['runbook'])}* on "
                f"{_mrkdwn(run['environment'])}")
        if event == "run-failed":
            step = run["step"]
            where = (f": step {step['position']} ({_mrkdwn(step['name'])})"
                     + (f" on {_mrkdwn(step['worker'])}" if step["worker"] else "")
                     + (f": {_mrkdwn(step['reason'])}" if step["reason"] else "")
                     if step else (f": {_mrkdwn(run['reason'])}" if run["reason"] else ""))
            return (f":x: {head} {run['status']}{where}. Launched by {_mrkdwn(body['who'])}."
                    f" `{body['command']}`")
        if event == "run-waiting":
            waiting = run["waiting"] or {}
            actions = ", ".join(waiting.get("actions", []))
            return (f":double_vertical_bar: {head} waits: "
                    f"{_mrkdwn(waiting.get('prompt', ''))} ({actions}). "
                    f"`workdeck runs decide {run['id']} ACTION`")
        return (f":white_check_mark: {head} succeeded. Launched by "
                f"{_mrkdwn(body['who'])}.")
    if event == "worker-unavailable":
        worker = body["worker"]
        pools = ", ".join(worker["pools"])
        return (f":red_circle: Worker *{_mrkdwn(worker['name'])}*"
                + (f" ({_mrkdwn(pools)})" if pools else "")
                + f" is unavailable: {_mrkdwn(worker['reason'])}")
    if event == "pool-short":
        pool = body["pool"]
        return (f":warning: Pool *{_mrkdwn(pool['name'])}* has {pool['healthy_workers']} "
                f"healthy worker{'s' if pool['healthy_workers'] != 1 else ''} of "
                f"{pool['workers']}: fewer than two, so one more failure stops its work.")
    return (f":wave: A test from Workdeck ({_mrkdwn(body['server'])}): the notification "
            f"*{_mrkdwn(body.get('notification', ''))}* reaches this channel.")
