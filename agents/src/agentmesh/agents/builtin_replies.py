"""The builtin backend's replies: an English template filled from the triage, the entities
and the sentiment, and what earlier steps of a workflow supplied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def given(data: Mapping[str, Any], obj: str, key: str, kind: type) -> Any:
    """data[obj][key] if an earlier step supplied it with the right type, else None."""
    inner = data.get(obj)
    value = inner.get(key) if isinstance(inner, Mapping) else None
    if kind is float:  # JSON (and protobuf Struct) numbers may arrive as int or float
        return float(value) if isinstance(value, int | float) else None
    return value if isinstance(value, kind) else None


_INTENT_LINES = {
    "refund": "We have received your request for a refund{amount} for {order}, and our billing "
    "team will process it. You will receive a confirmation email as soon as the refund "
    "has been issued.",
    "replacement": "We will arrange a replacement for {product} from {order} and email you "
    "the return label and delivery details.",
    "delivery": "We are checking the delivery of {order} with our carrier and will send you an "
    "update with the tracking details.",
    "billing": "We are reviewing the charge{amount} for {order}. If it was taken in error, we "
    "will correct it and confirm by email.",
    "technical": "Our technical support team will look into the problem with {product} from "
    "{order}. In the "
    "meantime, restarting it and installing the latest firmware update often helps.",
    "account": "We will help you regain access to your account. For your security, please use "
    "the password reset link on our sign-in page; we will never ask for your password by email.",
    "cancellation": "We have received your request to cancel {order} and will confirm the "
    "cancellation by email{amount_refund}.",
    "complaint": "Thank you for telling us about your experience. We have passed your feedback "
    "to the team responsible, and a supervisor will review your case.",
    "general": "Thank you for your message. A member of our team will look into it and get back "
    "to you shortly.",
}


def reply(triage: Mapping[str, Any], entities: Mapping[str, Any], sentiment: str) -> str:
    """Greeting, an apology if the customer is upset, the intent's answer, priority, sign-off."""
    orders = [o for o in entities.get("order_ids") or () if isinstance(o, str)]
    products = [p for p in entities.get("products") or () if isinstance(p, str)]
    amounts = [
        a["text"]
        for a in entities.get("amounts") or ()
        if isinstance(a, Mapping) and isinstance(a.get("text"), str)
    ]
    order = (
        f"order {orders[0]}"
        if len(orders) == 1
        else f"orders {', '.join(orders[:-1])} and {orders[-1]}"
        if orders
        else "your order"
    )
    intent = triage.get("intent")
    sentences = []
    if sentiment == "negative":
        sentences.append(f"We are very sorry for the trouble you have had with {order}.")
    template = (
        _INTENT_LINES.get(intent, _INTENT_LINES["general"])
        if isinstance(intent, str)
        else _INTENT_LINES["general"]
    )
    sentences.append(
        template.format(
            order=order,
            product=f"the {products[0]}" if products else "your device",
            amount=f" of {amounts[0]}" if amounts else "",
            amount_refund=f", including the refund of {amounts[0]}" if amounts else "",
        )
    )
    urgency = triage.get("urgency")
    if urgency == "critical":
        sentences.append(
            "We have escalated your case to a senior agent, who will contact you as a priority."
        )
    elif urgency == "high":
        sentences.append("We have given your case priority.")
    return "Hello,\n\n" + " ".join(sentences) + "\n\nKind regards,\nCustomer Support"
