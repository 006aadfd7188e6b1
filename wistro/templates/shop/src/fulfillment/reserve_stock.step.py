"""Reserves stock for the order, at the same time as the card is charged (fan-out)."""

config = {
    "name": "Reserve stock",
    "description": "Holds the items of the order in the warehouse",
    "subscribes": ["order.placed"],
    "input": {
        "type": "object",
        "properties": {"order_id": {"type": "string", "minLength": 1},
                       "amount_cents": {"type": "integer", "exclusiveMinimum": 0}},
        "required": ["order_id", "amount_cents"],
    },
    "emits": ["stock.reserved"],
    "flows": ["fulfillment"],
}


async def handler(order: dict, ctx) -> None:
    await ctx.state.set("stock", order["order_id"], {"reserved": True})
    await ctx.emit("stock.reserved", {"order_id": order["order_id"]})
