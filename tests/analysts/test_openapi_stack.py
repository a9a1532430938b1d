"""The running service serves /openapi.json, and its real answers match that document:
/health, /v1/map.json, /v1/sql (the documented examples, run), /v1/events and
/v1/admin/erase refusals, /metrics and /map content types."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate as validate_openapi

from tests.analysts.fielddata import FieldData
from tests.conftest import ROOT, Stack
from tests.schemas.openapi_examples import errors, http_examples

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(field: tuple[Stack, FieldData]) -> dict[str, Any]:
    stack, _ = field
    r = stack.http.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    validate_openapi(doc)
    return doc


def check(doc: dict[str, Any], path: str, method: str, r: Any) -> None:
    responses = doc["paths"][path][method]["responses"]
    assert str(r.status_code) in responses, (path, r.status_code, r.text[:300])
    content = responses[str(r.status_code)]["content"]
    ctype = r.headers["content-type"].split(";")[0]
    assert ctype in content, (path, ctype, list(content))
    if ctype == "application/json":
        problems = errors(doc, content[ctype]["schema"], r.json())
        assert not problems, (path, problems)


def test_answers_match_the_served_document(served: dict[str, Any],
                                           field: tuple[Stack, FieldData]) -> None:
    stack, data = field
    check(served, "/health", "get", stack.http.get("/health"))
    check(served, "/metrics", "get", stack.http.get("/metrics"))
    check(served, "/map", "get", stack.http.get("/map"))
    r = stack.http.get("/v1/map.json")
    assert r.status_code == 200 and r.json()["reps"]
    check(served, "/v1/map.json", "get", r)
    check(served, "/v1/map.json", "get", stack.http.get("/v1/map.json",
                                                        params={"territories": "0"}))
    check(served, "/v1/map.json", "get", stack.http.get("/v1/map.json", params={"at": "x"}))
    r = stack.http.get("/v1/map.json", params={"territories": "0", "paths": "1",
                                               "accounts": "1"})
    assert r.status_code == 200 and r.json()["accounts"]
    check(served, "/v1/map.json", "get", r)
    r = stack.http.get("/v1/map/rep.json", params={"rep": data.reps[0]})
    assert r.status_code == 200 and r.json()["rep_id"] == data.reps[0]
    check(served, "/v1/map/rep.json", "get", r)
    check(served, "/v1/map/rep.json", "get",
          stack.http.get("/v1/map/rep.json", params={"rep": "no such rep"}))
    check(served, "/map/config.json", "get", stack.http.get("/map/config.json"))
    token = next(iter(data.tokens.values()))
    check(served, "/v1/events", "post", stack.post(token, b'{"events": []}'))
    check(served, "/v1/events", "post", stack.post("gt_unknown", b'{"events": []}'))
    # no admin token configured here: the documented 403
    check(served, "/v1/admin/erase", "post",
          stack.http.post("/v1/admin/erase", json={"rep_id": "rep-x"}))
    check(served, "/v1/sql", "post", stack.http.post("/v1/sql", json={"sql": "DROP TABLE x"}))


def test_the_documented_sql_examples_run(served: dict[str, Any],
                                         field: tuple[Stack, FieldData]) -> None:
    stack, _ = field
    examples = [ex for f in ("ingest.md", "analysts.md")
                for ex in http_examples(ROOT / "docs" / f)
                if ex.path == "/v1/sql" and ex.status is None]
    assert len(examples) >= 2
    for ex in examples:
        r = stack.http.post("/v1/sql", json=ex.body)
        assert r.status_code == 200, (ex.where, r.text[:300])
        check(served, "/v1/sql", "post", r)
        assert r.content.strip(), ex.where
