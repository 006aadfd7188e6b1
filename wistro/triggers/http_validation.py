"""Validation of request bodies and queries: a check per JSON Schema or pydantic model that
raises the 422 ``validation_error`` with field paths (``strict``: pydantic's strict mode on the
value as JSON). A broken schema is a startup ``ConfigError``, not a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from wistro.core.topics import TopicCatalog
from wistro.errors import ConfigError, PayloadError
from wistro.triggers.http_body import HttpError, encode

MAX_FIELD_ERRORS = 20


def _pydantic_fields(where: str, e: PydanticValidationError) -> list[dict[str, str]]:
    return [
        {"path": ".".join([where, *map(str, err["loc"])]), "message": err["msg"]}
        for err in e.errors(include_url=False)[:MAX_FIELD_ERRORS]
    ]


def _invalid(fields: list[dict[str, str]]) -> HttpError:
    return HttpError(422, "validation_error", "request validation failed", fields=fields)


def _payload_field(where: str, e: PayloadError) -> dict[str, str]:
    path = where if e.field in (None, "(payload)") else f"{where}.{e.field}"
    return {"path": path, "message": e.message.removeprefix("invalid payload: ")}


Check = Callable[[Any], Any]


def _schema_check(schema: dict[str, Any], where: str, origin: str) -> Check:
    """A validator for ``schema`` that raises the 422 error with the field path."""
    validate = TopicCatalog.from_schemas({where: schema}).validator(where)
    try:
        validate({})  # compile it now: a broken schema is a startup error, not a 500
    except PayloadError:
        pass
    except Exception as e:
        raise ConfigError(f"invalid {where} schema: {e}", file=origin, field=where) from None

    def check(value: Any) -> Any:
        try:
            return validate(value)
        except PayloadError as e:
            raise _invalid([_payload_field(where, e)]) from None
        except RecursionError:
            raise HttpError(400, "bad_request", "JSON nested too deeply") from None

    return check


def _model_check(model: type[BaseModel], where: str, strict: bool = False) -> Check:
    """A validator for ``model``. ``strict``: pydantic's strict mode on the value as JSON, so
    ``"1"`` is no integer and ``1`` no boolean, while JSON's own text forms (dates, UUIDs, enum
    values) still parse."""

    def check(value: Any) -> Any:
        try:
            if strict:
                return model.model_validate_json(encode(value), strict=True)
            return model.model_validate(value)
        except PydanticValidationError as e:
            raise _invalid(_pydantic_fields(where, e)) from None

    return check
