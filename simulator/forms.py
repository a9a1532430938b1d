"""What a rep types into the visit form: outcome, notes, answers, photos, order, tags.

The vocabulary is small and skewed on purpose (a few competitors and needs dominate), so
trend queries over the forms ("competitor mentions by territory") have something to find.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

COMPETITORS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli")
COMPETITOR_WEIGHTS = (5, 3, 2, 1, 1)
NEEDS = ("delivery", "discount", "display", "training", "samples", "credit_terms")
OUTCOMES = ("order_placed", "follow_up", "no_decision", "not_interested", "customer_absent",
            "closed", "other")
OUTCOME_WEIGHTS = (40, 25, 15, 8, 6, 3, 3)
SKUS = tuple(f"SKU-{n:04d}" for n in (101, 102, 205, 310, 311, 420, 512, 777))
NOTES = (
    "Met the store manager.",
    "Shelf was half empty, restock needed.",
    "Asked for a price list for next quarter.",
    "Competitor promotion running at the entrance.",
    "Owner on holiday, spoke to the assistant.",
    "",
)


def submission_fields(
    rng: random.Random, account_id: str, visit_id: str, taken_at: list[str],
    photo_positions: list[dict[str, float]],
) -> dict[str, Any]:
    """The body of a ``visit_submission`` beyond the envelope and the visit interval.

    ``taken_at`` gives one device timestamp per photo (its length is the photo count), with the
    matching position in ``photo_positions``.
    """
    outcome = rng.choices(OUTCOMES, OUTCOME_WEIGHTS)[0]
    form: dict[str, Any] = {"contact_present": outcome != "customer_absent"}
    tags: list[str] = []
    if rng.random() < 0.45:
        comp = rng.choices(COMPETITORS, COMPETITOR_WEIGHTS)[0]
        form["competitor_seen"] = comp
        tags.append(f"competitor:{comp}")
    form["shelf_share_pct"] = rng.choice((10, 15, 20, 25, 30, 40, 50, 60))
    needs = sorted(set(rng.choices(NEEDS, (5, 4, 2, 1, 2, 1), k=rng.randint(0, 3))))
    form["needs"] = needs
    tags.extend(f"need:{n}" for n in needs)
    if outcome == "follow_up":
        form["follow_up_days"] = rng.choice((3, 7, 14, 30))
    photos = [
        {
            "photo_id": f"p-{visit_id}-{k + 1}",
            "sha256": f"{rng.getrandbits(256):064x}",
            "content_type": "image/jpeg",
            "bytes": rng.randint(150_000, 4_500_000),
            "taken_at": ts,
            "position": photo_positions[k],
        }
        for k, ts in enumerate(taken_at)
    ]
    body: dict[str, Any] = {
        "account_id": account_id,
        "visit_id": visit_id,
        "outcome": outcome,
        "notes": rng.choice(NOTES),
        "form": form,
        "photos": photos,
        "tags": tags,
    }
    if outcome == "order_placed":
        body["order"] = _order(rng)
    return body


def _order(rng: random.Random) -> dict[str, Any]:
    lines = []
    total = Decimal(0)
    for sku in rng.sample(SKUS, rng.randint(1, 4)):
        qty = Decimal(rng.choice((1, 2, 5, 10, 12, 24, 48)))
        price = Decimal(rng.randint(150, 9_900)) / 100
        total += qty * price
        lines.append({"sku": sku, "quantity": str(qty), "unit_price": str(price)})
    # Decimals go on the wire as strings: JSON floats would lose cents.
    return {"currency": "EUR", "total": str(total), "lines": lines}
