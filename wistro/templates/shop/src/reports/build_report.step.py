"""Counts the orders in state and logs the report."""

config = {
    "name": "Build report",
    "description": "Summarises the orders charged so far",
    "subscribes": ["report.requested"],
    "input": {
        "type": "object",
        "properties": {"kind": {"type": "string", "enum": ["daily", "weekly"]}},
        "required": ["kind"],
    },
    "flows": ["reports"],
}


async def handler(request: dict, ctx) -> None:
    orders = await ctx.state.get_group("orders")
    charged = sum(1 for order in orders.values() if order.get("status") == "charged")
    ctx.logger.info("report", kind=request["kind"], orders=len(orders), charged=charged)
