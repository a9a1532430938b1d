"""Bearer tokens of the service's own endpoints (SQL, map data, admin).

Only ``Authorization: Bearer <token>`` counts (the scheme compared case-insensitively, as
RFC 7235 says); another scheme, a token in the query string or a cookie is no token. Tokens
are compared in constant time, against every token that grants the access.

>>> from pydantic import SecretStr
>>> bearer_ok("Bearer s3cret", [SecretStr("s3cret")])
True
>>> bearer_ok("Digest s3cret", [SecretStr("s3cret")])
False
>>> bearer_ok("Bearer s3cret", [])
False
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from pydantic import SecretStr


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def bearer_ok(authorization: str | None, tokens: Iterable[SecretStr | None]) -> bool:
    """Does the header carry one of ``tokens`` (unset ones grant nothing)?"""
    got = (bearer_token(authorization) or "").encode()
    ok = False
    for t in tokens:
        if t is None or not t.get_secret_value():
            continue
        # No early exit: the time taken does not say which token matched.
        ok |= hmac.compare_digest(got, t.get_secret_value().encode()) and bool(got)
    return ok
