"""POST /orders: the shop's front door. Takes an order and starts the checkout flow."""

from wistro import Context

from .models import OrderPlaced

config = {
    "type": "api",
    "name": "Place order",
    "description": "Accepts an order over HTTP",
    "path": "/orders",
    "method": "POST",
    "body": OrderPlaced,
    "emits": ["order.placed"],
    "flows": ["checkout"],
}


async def handler(req, ctx: Context):
    order = OrderPlaced.model_validate(req.body)
    await ctx.emit("order.placed", order)
    return {"status": 202, "body": {"order_id": order.order_id, "trace_id": ctx.trace_id}}
