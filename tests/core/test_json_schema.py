"""A step's input schema comes from its model through a faster generator: the same JSON Schema
as ``model_json_schema()``, for every kind of model a user writes."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import GenerateJsonSchema

from wistro.core.json_schema import CachedGenerateJsonSchema, model_schema


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    zip: Annotated[str, Field(pattern=r"^\d{5}$")]


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Order(BaseModel):
    model_config = ConfigDict(title="An order", extra="forbid")

    order_id: str = Field(min_length=1, description="the shop's id")
    amount_cents: int = Field(gt=0)
    color: Color = Color.RED
    kind: Literal["a", "b"] | None = None
    at: dt.datetime | None = None
    ship_to: Address
    notes: dict[str, list[float]] = {}
    alias_field: int = Field(0, alias="aliasField")

    @field_validator("order_id")
    @classmethod
    def strip(cls, v: str) -> str:
        return v.strip()


class Custom(BaseModel):
    """A model that changes its own schema."""

    n: int

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"type": "object", "title": "custom", "properties": {"n": {"type": "integer"}}}


class CustomNoArguments(BaseModel):
    """An override that takes no arguments at all: asked as it is."""

    n: int

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:  # type: ignore[override]
        return {"type": "object", "title": "bare"}


@pytest.mark.parametrize("model", [Address, Node, Order, Custom, CustomNoArguments])
def test_the_schema_is_the_one_pydantic_makes(model: type[BaseModel]) -> None:
    assert model_schema(model) == model.model_json_schema()


def test_hundreds_of_models_in_a_row_get_their_own_schemas() -> None:
    models = [
        type(f"M{i}", (BaseModel,), {"__annotations__": {f"f{i}": int, "name": str}})
        for i in range(300)
    ]
    for i, model in enumerate(models):
        schema = model_schema(model)
        assert schema == model.model_json_schema()
        assert schema["title"] == f"M{i}" and f"f{i}" in schema["properties"]


def test_the_dispatch_table_is_the_generators_own() -> None:
    """Each generator gets the table bound to itself (a generator is single-use)."""
    a, b = CachedGenerateJsonSchema(), CachedGenerateJsonSchema()
    table_a, table_b = a._schema_type_to_method, b._schema_type_to_method
    assert table_a.keys() == GenerateJsonSchema()._schema_type_to_method.keys()
    assert table_a["int"].__self__ is a and table_b["int"].__self__ is b
