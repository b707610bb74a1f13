"""The order-returns domain's Python skills: `lookup_order` and `apply_return_policy`.

    agentmesh worker --skills-module examples/agents/returns/returns.py

Both work offline: the orders are in `orders.json` beside this file (a shop
would call its order system here), and the policy is plain code, so that a
refund is decided by rules, never by a model. The customer's reply is
written by the model-declared skill `skills/customer_reply.toml`. See
examples/agents/README.md.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from agentmesh.agents import SkillContext, skill
from agentmesh.errors import NotFound

ORDERS = Path(__file__).with_name("orders.json")
RETURN_DAYS = 30
"""Days after delivery within which an item may be returned."""
FINAL_SALE = frozenset({"gift_cards"})
"""Categories that are never returned."""

ITEM = {
    "type": "object",
    "properties": {
        "sku": {"type": "string"},
        "name": {"type": "string"},
        "price": {"type": "number", "minimum": 0},
        "category": {"type": "string"},
    },
    "required": ["sku", "name", "price", "category"],
    "additionalProperties": False,
}
ORDER = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "customer": {"type": "string"},
        "delivered_on": {"type": "string", "format": "date"},
        "items": {"type": "array", "items": ITEM, "minItems": 1},
    },
    "required": ["order_id", "customer", "delivered_on", "items"],
    "additionalProperties": False,
}


@skill(
    name="lookup_order",
    description="Look up a shop order by its id: the customer, the delivery date and the items.",
    input_schema={
        "type": "object",
        "properties": {"order_id": {"type": "string", "pattern": "^ORD-[0-9]{4}$"}},
        "required": ["order_id"],
    },
    output_schema=ORDER,
    max_input_bytes=1024,
)
async def lookup_order(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    orders = json.loads(ORDERS.read_text(encoding="utf-8"))
    order_id = input["order_id"]
    if order_id not in orders:
        # NOT_FOUND with the id: the caller's mistake, not the worker's.
        raise NotFound(
            f"no order {order_id}", reason="ORDER_NOT_FOUND", metadata={"order_id": order_id}
        )
    context.logger.info("order found", extra={"order_id": order_id})
    return {"order_id": order_id, **orders[order_id]}


@skill(
    name="apply_return_policy",
    description="Decide which items of an order may be returned, and the refund, by the "
    f"shop's policy: within {RETURN_DAYS} days of delivery, gift cards never.",
    input_schema={
        "type": "object",
        "properties": {
            "order": ORDER,
            "requested_on": {"type": "string", "format": "date"},
            "skus": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["order", "requested_on"],
    },
    output_schema={
        "type": "object",
        "properties": {
            "decision": {"enum": ["accepted", "partial", "refused"]},
            "refund": {"type": "number", "minimum": 0},
            "days_since_delivery": {"type": "integer"},
            "returnable": {"type": "array", "items": {"type": "string"}},
            "reasons": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["decision", "refund", "days_since_delivery", "returnable", "reasons"],
        "additionalProperties": False,
    },
)
async def apply_return_policy(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    order = input["order"]
    delivered = datetime.date.fromisoformat(order["delivered_on"])
    days = (datetime.date.fromisoformat(input["requested_on"]) - delivered).days
    wanted = set(input.get("skus") or [item["sku"] for item in order["items"]])
    returnable: list[str] = []
    reasons: list[str] = []
    refund = 0.0
    for item in order["items"]:
        if item["sku"] not in wanted:
            continue
        if item["category"] in FINAL_SALE:
            reasons.append(f"{item['name']}: final sale, not returnable")
        elif days > RETURN_DAYS:
            reasons.append(f"{item['name']}: delivered {days} days ago, past {RETURN_DAYS}")
        else:
            returnable.append(item["sku"])
            refund += item["price"]
    if not returnable:
        decision = "refused"
    elif reasons:
        decision = "partial"
    else:
        decision = "accepted"
    return {
        "decision": decision,
        "refund": round(refund, 2),
        "days_since_delivery": days,
        "returnable": returnable,
        "reasons": reasons,
    }
