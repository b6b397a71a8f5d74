"""Strict checks of incoming JSON that name the offending field ("run.runId: required")."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["EPOCH", "MAX_ITEMS", "Checker", "InvalidEventError"]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_ITEMS: Final = 10_000


class InvalidEventError(ValueError):
    """An event was rejected; ``errors`` lists every problem as ``field: what is wrong``."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def _key(path: str) -> str:
    return path.rsplit(".", 1)[-1]


class Checker:
    """Collects errors while reading a JSON document; each reader returns a harmless value on error."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path or 'event'}: {message}")

    def raise_if_any(self) -> None:
        if self.errors:
            raise InvalidEventError(self.errors)

    def missing(self, path: str) -> dict[str, Any]:
        self.fail(path, "required")
        return {}

    def obj(self, value: object, path: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.fail(path, "must be a JSON object")
        return {}

    def string(self, data: dict[str, Any], path: str, required: bool = True, max_length: int = 4096) -> str:
        value = data.get(_key(path))
        if value is None:
            if required:
                self.fail(path, "required")
            return ""
        if not isinstance(value, str) or (required and not value):
            self.fail(path, "must be a non-empty string")
            return ""
        if len(value) > max_length:
            self.fail(path, f"must be at most {max_length} characters (got {len(value)})")
            return ""
        return value

    def choice(self, data: dict[str, Any], path: str, allowed: Sequence[str]) -> str:
        value = self.string(data, path)
        if value and value not in allowed:
            self.fail(path, f"must be one of {', '.join(allowed)} (got {value[:64]!r})")
            return ""
        return value

    def timestamp(self, data: dict[str, Any], path: str, latest: datetime) -> datetime:
        """An aware date-time from 1970 to ``latest``: PostgreSQL stores far more than Python can read back."""
        value = self.string(data, path, max_length=64)
        if not value:
            return EPOCH
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.fail(path, f"must be an ISO 8601 date-time with a time zone (got {value!r})")
            return EPOCH
        if not EPOCH <= parsed <= latest:
            self.fail(path, f"must be between 1970-01-01T00:00:00Z and {latest.isoformat(timespec='seconds')} "
                            f"(now + 1 day) (got {value!r})")
            return EPOCH
        return parsed

    def uuid(self, data: dict[str, Any], path: str) -> str:
        value = self.string(data, path, max_length=64)
        if not value:
            return ""
        try:
            return str(uuid.UUID(value))
        except ValueError:
            self.fail(path, f"must be a UUID (got {value!r})")
            return ""

    def array(self, data: dict[str, Any], path: str) -> list[Any]:
        value = data.get(_key(path), [])
        if not isinstance(value, list):
            self.fail(path, "must be an array")
            return []
        if len(value) > MAX_ITEMS:
            self.fail(path, f"must have at most {MAX_ITEMS} items (got {len(value)})")
            return []
        return value

    def count(self, data: dict[str, Any], path: str) -> int | None:
        value = data.get(_key(path))
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(path, f"must be a non-negative integer (got {value!r})")
            return None
        return value

    def fields(self, data: dict[str, Any], path: str) -> list[dict[str, Any]] | None:
        """The ``fields`` of a schema facet (each an object with a string ``name``), or None if invalid."""
        before = len(self.errors)
        items = self.array(data, path)
        for i, item in enumerate(items):
            field = self.obj(item, f"{path}[{i}]")
            self.string(field, f"{path}[{i}].name")
            self.string(field, f"{path}[{i}].type", required=False)
            if "fields" in field:
                self.fields(field, f"{path}[{i}].fields")
        return items if len(self.errors) == before else None

    def storable(self, value: object, path: str) -> None:
        """Text and jsonb in PostgreSQL hold neither NUL nor unpaired surrogates: reject them anywhere."""
        if isinstance(value, str):
            self._text(value, path, "")
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                self._text(str(key), child, "keys ")
                self.storable(item, child)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.storable(item, f"{path}[{i}]")

    def _text(self, value: str, path: str, what: str) -> None:
        if "\0" in value:
            self.fail(path, f"{what}must not contain NUL characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            self.fail(path, f"{what}must be valid Unicode (unpaired surrogate)")
