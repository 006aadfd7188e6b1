"""Every night at 02:00 (shop time), ask for the sales report. A cron step: no input."""

config = {
    "type": "cron",
    "name": "Nightly report",
    "description": "Starts the daily sales report",
    "cron": "0 2 * * *",
    "timezone": "Europe/Berlin",
    "emits": ["report.requested"],
    "flows": ["reports"],
}


async def handler(ctx) -> None:
    await ctx.emit("report.requested", {"kind": "daily"})
