"""The API's contract: one error shape everywhere (a sentence and a code), documented in
the OpenAPI document; a bad parameter is a clear refusal, never a server error."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import both_stores

from console.client import ApiError

pytestmark = both_stores


def raw(workdeck, method, path, **kwargs):
    transport = httpx.HTTPTransport(uds=str(workdeck.data_dir.socket))
    with httpx.Client(transport=transport, base_url="http://workdeck") as http:
        return http.request(method, path, **kwargs)


@pytest.mark.parametrize("method, path, body, status, code", [
    ("GET", "/api/workers/no-such-worker", None, 404, "not_found"),
    ("GET", "/api/runs/9999", None, 404, "not_found"),
    ("POST", "/api/pools", {"name": "Default Worker Pool"}, 409, "conflict"),
    ("POST", "/api/pools", {"nmae": "typo"}, 422, "invalid"),
    ("GET", "/api/pools/Default Worker Pool?history_s=-6.3e16", None, 422, "invalid"),
    ("GET", "/api/pools/Default Worker Pool?history_s=nan", None, 422, "invalid"),
    ("GET", "/api/runs/1346973196277517360562176", None, 422, "invalid"),
    ("GET", "/api/runs/1/log.txt?after=99999999999999999999", None, 422, "invalid"),
    ("GET", "/api/audit?limit=-5", None, 422, "invalid"),
    ("GET", "/api/no/such/route", None, 404, "not_found"),
    ("DELETE", "/api/environments", None, 405, "not_allowed"),
])
def test_every_refusal_is_a_sentence_and_a_code(workdeck, method, path, body, status, code):
    response = raw(workdeck, method, path, json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert set(answer) == {"detail", "code"} and answer["code"] == code
    assert answer["detail"].endswith(".") and "Traceback" not in answer["detail"]


def test_the_client_carries_the_code(workdeck):
    with workdeck.client() as client, pytest.raises(ApiError) as refused:
        client.get("/api/runs/9999")
    assert refused.value.code == "not_found" and refused.value.status_code == 404


def test_the_openapi_document_tells_the_error_shape(workdeck):
    schema = raw(workdeck, "GET", "/openapi.json").json()
    assert "ErrorBody" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    operation = schema["paths"]["/api/runs/{run_id}"]["get"]
    for status in ("404", "422"):
        ref = operation["responses"][status]["content"]["application/json"]["schema"]
        assert ref == {"$ref": "#/components/schemas/ErrorBody"}


def test_a_pool_without_its_history_is_what_the_console_asks_for(workdeck):
    answer = raw(workdeck, "GET", "/api/pools/Default Worker Pool", params={"history_s": 0})
    assert answer.status_code == 200 and answer.json()["name"] == "Default Worker Pool"


# Routes whose answer is not one JSON document: streams and plain text.
NOT_JSON = {("GET", "/api/events"), ("GET", "/api/runs/{run_id}/log"),
            ("GET", "/api/runs/{run_id}/log.txt"), ("GET", "/api/runbooks/{name}/export"),
            ("GET", "/metrics")}


def test_every_route_declares_what_it_answers(workdeck):
    schema = raw(workdeck, "GET", "/openapi.json").json()
    undeclared = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if (method.upper(), path) in NOT_JSON:
                continue
            for status, response in operation["responses"].items():
                if not status.startswith("2") or status == "204":
                    continue
                body = response.get("content", {}).get("application/json", {}).get("schema")
                if not body or body == {}:
                    undeclared.append(f"{method.upper()} {path} {status}")
    assert not undeclared, "routes that do not declare their answer: " + ", ".join(undeclared)


def test_the_contract_check_finds_a_broken_answer(workdeck, tmp_path):
    # The suite-wide check (tests/contract.py) must catch what it is there for.
    from conftest import contract

    with workdeck.client() as client:
        api = contract(client)
    worker = {"name": "w", "host": "h"}  # most keys missing
    recorded = tmp_path / "answers.jsonl"
    answers = [
        {"method": "GET", "path": "/api/workers/w", "status": 200, "body": json.dumps(worker)},
        {"method": "POST", "path": "/api/workers/import", "status": 200, "body": "[]"},
        {"method": "GET", "path": "/api/pools", "status": 200,
         "body": json.dumps([{"name": "p", "undeclared": 1}])},
        {"method": "GET", "path": "/api/workers/w%2Fx/history", "status": 200, "body": "[]"},
        {"method": "GET", "path": "/api/runs/7", "status": 404,
         "body": json.dumps({"detail": "No run 7.", "code": "not_found"})},
    ]
    recorded.write_text("".join(json.dumps(a) + "\n" for a in answers))
    found = api.violations(recorded)
    events = [
        {"method": "GET", "path": "/api/events", "status": 200, "event": "changes",
         "body": json.dumps([{"type": "worker", "key": "w", "data": worker}])},
        {"method": "GET", "path": "/api/events", "status": 200, "event": "surprise",
         "body": "{}"},
        {"method": "GET", "path": "/api/runs/7/log", "status": 200, "event": "end",
         "body": json.dumps({"status": "succeeded", "reason": ""})},
    ]
    recorded.write_text("".join(json.dumps(a) + "\n" for a in answers + events))
    found = api.violations(recorded)
    assert len(found) == 5, found
    assert "GET /api/workers/w answered 200: at the body: 'port' is a required" in found[0]
    assert "a status its route does not declare" in found[1]
    assert "/api/pools" in found[2]
    assert "event changes: at 0/data: 'port' is a required" in found[3]
    assert "event surprise, an event its route does not declare" in found[4]


def test_the_streams_keep_their_contract(workdeck):
    """Every change the push stream sends is declared in the OpenAPI document (the
    fixture checks each event sent during the suite); here each kind is provoked once,
    and the snapshot's worker rows read as workers."""
    from wire.events import CHANGES, Snapshot
    from wire.workers import Worker

    with workdeck.client() as client:
        client.put("/api/settings", {"builtin_worker": True})
        stream = client.stream_events("/api/events")
        event, data = next(stream)
        assert event == "snapshot"
        snapshot = Snapshot.model_validate(data)
        rows = [Worker.model_validate(dict(zip(snapshot.worker_columns, row, strict=True)))
                for row in snapshot.worker_rows]
        assert [w.name for w in rows] == ["built-in-worker"] and rows[0].builtin
        client.post("/api/pools", {"name": "Streamed", "description": "seen live"})
        client.post("/api/workers", {"name": "gone", "host": "127.0.0.1", "port": 9})
        client.delete("/api/workers/gone")
        client.post("/api/environments", {"name": "Staging"})
        client.post("/api/runbooks", {"toml": 'name = "Hello"\n[[steps]]\nname = "s"\n'
                                              'script = "echo hi"\n'})
        run = client.post("/api/runs", {"runbook": "Hello", "environment": "Staging"})
        client.delete("/api/runbooks/Hello")
        seen: set[str] = set()
        for event, data in stream:
            if event != "changes":
                continue
            for change in CHANGES.validate_python(data):
                seen.add(change.type)
                if change.type == "run":
                    assert change.data.id == run["id"] and change.data.steps
            if {"pool", "worker", "worker.removed", "environment", "runbook",
                    "runbook.removed", "run", "usage"} <= seen and \
                    client.get(f"/api/runs/{run['id']}")["finished_at"]:
                break


def test_names_with_a_slash_are_one_path_segment(workdeck):
    # "/" in a name travels as %2F; a literal "/" separates the path's parts.
    with workdeck.client() as client:
        for name in ("x", "x/history"):
            client.post("/api/workers", {"name": name, "host": "127.0.0.1", "port": 9})
        client.post("/api/pools", {"name": "a/b"})
        client.post("/api/runbooks", {"toml": 'name = "r/export"\n[[steps]]\nname = "s"\n'
                                              'script = "true"\n'})
    assert raw(workdeck, "GET", "/api/workers/x%2Fhistory").json()["name"] == "x/history"
    assert raw(workdeck, "GET", "/api/workers/x%2fhistory").json()["name"] == "x/history"
    assert isinstance(raw(workdeck, "GET", "/api/workers/x/history").json(), list)
    assert raw(workdeck, "GET", "/api/workers/x%2Fhistory/history").status_code == 200
    assert raw(workdeck, "GET", "/api/pools/a%2Fb").json()["name"] == "a/b"
    assert raw(workdeck, "GET", "/api/pools/a/b").status_code == 404
    assert raw(workdeck, "GET", "/api/runbooks/r%2Fexport").json()["name"] == "r/export"
    refused = raw(workdeck, "GET", "/api/runbooks/r/export")
    assert refused.status_code == 404 and "'r'" in refused.json()["detail"]
    assert raw(workdeck, "GET", "/api/runbooks/r%2Fexport/export").text.startswith(
        'name = "r/export"')
    assert raw(workdeck, "DELETE", "/api/workers/x%2Fhistory").status_code == 204
    assert raw(workdeck, "GET", "/api/workers/x").json()["name"] == "x"
    # The command line quotes names for the user.
    assert workdeck.cli("worker", "show", "x").code == 0
    assert workdeck.cli("pool", "show", "a/b").code == 0
    assert workdeck.cli("runbook", "export", "r/export").out.startswith('name = "r/export"')


def test_a_worker_name_ending_in_what_strip_removes_is_added_as_stored(workdeck):
    # Found by the API fuzz: U+001C counts as white space, so it is stripped from the end
    # of a name (one inside is refused); the worker was added, then answered with a 500,
    # looked up by the name as sent, not as stored.
    answer = raw(workdeck, "POST", "/api/workers", json={"name": "web-01\u001c",
                                                          "host": "127.0.0.1", "port": 9})
    assert answer.status_code == 201, answer.text
    assert answer.json()["name"] == "web-01"
    assert raw(workdeck, "GET", "/api/workers/web-01").json()["name"] == "web-01"


# Keys renamed for one name per idea, kept under their old names for one release
# (README, "Changed"): where they are, (new name, old name).
RENAMED = {
    "Worker": [("leased", "leases"), ("check_status", "health")],
    "PoolMember": [("leased", "leases")],
    "Lease": [("step_name", "step"), ("worker_reason", "reason")],  # live: test_pools_live
    "QueuedStep": [("step_name", "step")],
    "PoolDetail": [("usage_history", "history")],  # live: test_pools_live
    "PlannedStep": [("healthy_workers", "healthy")],
}


def test_renamed_keys_still_come_back_under_their_old_names(workdeck):
    with workdeck.client() as client:
        client.post("/api/workers", {"name": "w1", "host": "127.0.0.1", "port": 9,
                                     "pools": ["P"]})
        worker = client.get("/api/workers/w1")
        [listed] = [w for w in client.get("/api/workers") if w["name"] == "w1"]
        member = client.get("/api/pools/P")["member_workers"][0]
        client.post("/api/environments", {"name": "Test"})
        client.post("/api/runbooks", {"toml": 'name = "R"\n[[steps]]\nname = "s"\n'
                                              'pool = "P"\nscript = "true"\n'})
        [planned] = client.post("/api/runs/plan", {"runbook": "R", "environment": "Test"}
                                )["steps"]
        schemas = client.get("/openapi.json")["components"]["schemas"]
    for shown in (worker, listed):
        for new, old in RENAMED["Worker"]:
            assert shown[old] == shown[new], (new, old)
    for new, old in RENAMED["PoolMember"]:
        assert member[old] == member[new]
    for new, old in RENAMED["PlannedStep"]:
        assert planned[old] == planned[new] is not None
    # /docs says which names are the old ones.
    for model, pairs in RENAMED.items():
        properties = schemas[model]["properties"]
        for new, old in pairs:
            assert properties[old].get("deprecated") is True, (model, old)
            assert not properties[new].get("deprecated"), (model, new)
