"""Python: charges the card and hands the payment to the Go fraud scorer."""

from pydantic import BaseModel, Field


class OrderPlaced(BaseModel):
    order_id: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


config = {
    "name": "Charge card",
    "subscribes": ["order.placed"],
    "input": OrderPlaced,
    "emits": ["payment.captured"],
    "flows": ["checkout"],
}


async def handler(order: OrderPlaced, ctx) -> None:
    ctx.logger.info("charging", order_id=order.order_id)
    await ctx.state.set(ctx.trace_id, "amount_cents", order.amount_cents)
    await ctx.emit("payment.captured", order.model_dump())
