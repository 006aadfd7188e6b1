"""Charges the card on file. Large orders are declined and go to a person for review."""

from wistro import Context

from .models import OrderPlaced, PaymentCaptured

LIMIT_CENTS = 50_000

config = {
    "type": "event",
    "name": "Charge card",
    "description": "Charges the card on file",
    "subscribes": ["order.placed"],
    "input": OrderPlaced,
    "emits": [
        {"topic": "payment.captured", "schema": PaymentCaptured},
        {"topic": "payment.declined", "label": "declined", "conditional": True},
    ],
    "flows": ["checkout"],
    "retries": 2,
    "timeout_s": 10,
}


async def handler(order: OrderPlaced, ctx: Context) -> None:
    ctx.logger.info("charging", order_id=order.order_id, amount_cents=order.amount_cents)
    if order.amount_cents > LIMIT_CENTS:
        await ctx.state.set("orders", order.order_id, {"status": "declined"})
        await ctx.emit("payment.declined", {"order_id": order.order_id, "reason": "over limit"})
        return
    await ctx.state.set("orders", order.order_id, {"status": "charged"})
    await ctx.emit("payment.captured", PaymentCaptured(**order.model_dump()))
