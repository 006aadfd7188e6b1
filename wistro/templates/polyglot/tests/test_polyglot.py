"""One event crosses Python, Go, TypeScript and JavaScript in one trace."""


async def test_an_order_crosses_four_languages(wistro_app):
    run = await wistro_app.emit("order.placed", {"order_id": "A1", "amount_cents": 1200})
    assert run.status == "ok", run.errors
    languages = {wistro_app.step(name).language for name in run.spans["step"]}
    assert languages == {"python", "go", "typescript", "javascript"}
    assert run.emitted("receipt.sent", order_id="A1", risky=False)
    assert "ship it" in set(run.logs["message"])


async def test_a_large_order_is_held(wistro_app):
    run = await wistro_app.emit("order.placed", {"order_id": "B2", "amount_cents": 90_000})
    assert run.emitted("receipt.sent", order_id="B2", risky=True)
