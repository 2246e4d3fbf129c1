"""The API's contract: one error shape everywhere (a sentence and a code), documented in
the OpenAPI document; a bad parameter is a clear refusal, never a server error."""

from __future__ import annotations

import httpx
import pytest

from console.client import ApiError


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
