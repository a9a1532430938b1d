"""The HTTP examples of the docs, as (file, method, path, status, body), and validation of a
body against the OpenAPI document (jsonschema, the document's components as the root)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

_BLOCK = re.compile(r"^```http\n(.*?)^```", re.S | re.M)
_REQUEST = re.compile(r"^(GET|POST|PUT|DELETE|PATCH) (\S+) HTTP/1\.1$")
_RESPONSE = re.compile(r"^HTTP/1\.1 (\d{3}) ")


@dataclass
class Example:
    where: str
    method: str  # of the request, or of the request the response answers
    path: str
    status: int | None  # None: a request
    body: Any


def http_examples(path: Path) -> list[Example]:
    """Every ```http block of a markdown file: a request (``POST /v1/events HTTP/1.1``,
    headers, blank line, JSON body) or a response (``HTTP/1.1 202 Accepted``, ...), which
    answers the request block before it."""
    out: list[Example] = []
    last: tuple[str, str] | None = None
    for n, block in enumerate(_BLOCK.findall(path.read_text())):
        head, _, body = block.partition("\n\n")
        first = head.splitlines()[0]
        where = f"{path.name} http block {n}"
        doc = json.loads(body) if body.strip() else None
        if m := _REQUEST.match(first):
            last = (m.group(1), m.group(2).split("?")[0])
            out.append(Example(where, last[0], last[1], None, doc))
        elif m := _RESPONSE.match(first):
            assert last is not None, f"{where}: a response before any request"
            out.append(Example(where, last[0], last[1], int(m.group(1)), doc))
        else:
            raise AssertionError(f"{where}: neither a request nor a response: {first!r}")
    return out


def body_schema(doc: dict[str, Any], ex: Example) -> dict[str, Any]:
    op = doc["paths"][ex.path][ex.method.lower()]
    if ex.status is None:
        media = op["requestBody"]["content"]["application/json"]
    else:
        media = op["responses"][str(ex.status)]["content"]["application/json"]
    return dict(media["schema"])


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """``schema`` with the document's components beside it, so ``#/components/...`` refs
    resolve as they do in the document."""
    root = {**schema, "components": doc["components"]}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def errors(doc: dict[str, Any], schema: dict[str, Any], body: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}"
            for e in validator(doc, schema).iter_errors(body)]
