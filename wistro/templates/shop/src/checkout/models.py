"""Payload types shared by the checkout steps (a helper module, imported relatively)."""

from pydantic import BaseModel, Field


class OrderPlaced(BaseModel):
    order_id: str = Field(min_length=1)
    amount_cents: int = Field(gt=0)


class PaymentCaptured(BaseModel):
    order_id: str
    amount_cents: int
