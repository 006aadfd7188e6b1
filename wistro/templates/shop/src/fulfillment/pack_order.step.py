"""Packs the order and hands it to the courier."""

config = {
    "name": "Pack order",
    "subscribes": ["stock.reserved"],
    "input": {"type": "object", "properties": {"order_id": {"type": "string"}},
              "required": ["order_id"]},
    "emits": ["order.shipped"],
    "flows": ["fulfillment"],
}


async def handler(item: dict, ctx) -> None:
    ctx.logger.info("packed", order_id=item["order_id"])
    await ctx.emit("order.shipped", {"order_id": item["order_id"]})
