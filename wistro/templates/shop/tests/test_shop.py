"""The shop's own tests: one handler alone with a mock context, and the whole flow."""

from wistro.testing import load_step, mock_context


async def test_charge_card_declines_large_orders():
    step = load_step("src/checkout/charge_card.step.py")
    ctx = mock_context(step)
    await step.run({"order_id": "B2", "amount_cents": 90_000}, ctx)
    assert ctx.emitted("payment.declined", order_id="B2")
    assert not ctx.emitted("payment.captured")
    assert await ctx.state.get("orders", "B2") == {"status": "declined"}


async def test_an_order_is_charged_reserved_and_receipted(wistro_app):
    run = await wistro_app.emit("order.placed", {"order_id": "A1", "amount_cents": 1200})
    assert run.status == "ok", run.errors
    assert run.emitted("payment.captured", order_id="A1")
    assert run.emitted("stock.reserved", order_id="A1")
    assert run.ran("Send receipt") and run.ran("Pack order")
    assert await wistro_app.state.get("orders", "A1") == {"status": "charged", "receipt": "sent"}


async def test_an_invalid_order_is_refused(wistro_app):
    import pytest
    from wistro.errors import PayloadError

    with pytest.raises(PayloadError, match="amount_cents"):
        await wistro_app.emit("order.placed", {"order_id": "A1", "amount_cents": "lots"})
