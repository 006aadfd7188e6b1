"""Sends the receipt. A plain `def` handler: it runs on a handler thread, ctx calls are direct."""

config = {
    "name": "Send receipt",
    "description": "Emails the receipt for a captured payment",
    "subscribes": ["payment.captured"],
    "input": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "amount_cents": {"type": "integer"}},
        "required": ["order_id", "amount_cents"],
    },
    "emits": [],
    "flows": ["checkout"],
}


def handler(payment: dict, ctx) -> None:
    # update, not get then set: Charge card may write the same order at the same time
    ctx.state.update("orders", payment["order_id"], lambda order: {**(order or {}), "receipt": "sent"})
    dollars = payment["amount_cents"] / 100
    ctx.logger.info("receipt sent", order_id=payment["order_id"], total=f"${dollars:.2f}")
