"""A JSONField stored as PostgreSQL `json`, which keeps the text it is given byte for byte.

The audit trail stores each payload as the exact canonical bytes its hash was taken over, so
that verify can hash the stored text without parsing it (assistant/audit_canonical.py). `jsonb`
would re-print it in its own format. Django's JSONField lookups use jsonb operators (`=`, `@>`,
`?`) that `json` does not have; here key transforms extract with json's own `->` / `#>` and
cast only the extracted value to jsonb, and lookups on the whole column cast the column.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models.fields.json import KeyTransform, KeyTransformFactory

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models import Expression, Lookup, Transform
    from django.db.models.sql.compiler import SQLCompiler, _AsSqlType


class JSONKeyTransform(KeyTransform):
    """`payload__key`: `(("payload" -> 'key'))::jsonb`, nested keys with `#>`. The outermost
    transform compiles the whole path (KeyTransform.preprocess_lhs), so only it casts.

    The cast value is what jsonb lookups compare; `json -> key` reads the text once without
    converting the whole document (an index on `((payload -> 'answer_id')::jsonb)` matches
    this SQL: migration 0012)."""

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> _AsSqlType:
        sql, params = super().as_postgresql(compiler, connection)
        return f"({sql})::jsonb", params


class _JSONKeyTransformFactory(KeyTransformFactory):
    def __call__(self, *args: Any, **kwargs: Any) -> JSONKeyTransform:
        return JSONKeyTransform(self.key_name, *args, **kwargs)


@functools.cache
def _on_jsonb(lookup: type[Lookup[Any]]) -> type[Lookup[Any]]:
    """`lookup` with its left-hand side cast to jsonb when that side is the json column
    itself (a key transform's value is jsonb already)."""

    def process_lhs(
        self: Lookup[Any],
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        lhs: Expression | None = None,
    ) -> _AsSqlType:
        # What super(cls, self) finds: cls has the one base, `lookup`.
        sql, params = lookup.process_lhs(self, compiler, connection, lhs)
        if not isinstance(self.lhs, KeyTransform):
            sql = f"({sql})::jsonb"
        return sql, params

    cls: type[Lookup[Any]] = type(
        f"JSONText{lookup.__name__}", (lookup,), {"process_lhs": process_lhs}
    )
    return cls


class JSONTextField(models.JSONField):
    """JSON stored as `json`: the text written is the text read back (`payload::text`).

    psycopg returns `json` values already parsed (Django registers its text loader for jsonb
    only), so from_db_value passes them through."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return "json"

    def from_db_value(
        self, value: Any, expression: Expression, connection: BaseDatabaseWrapper
    ) -> Any:
        if isinstance(value, str | bytes):
            return super().from_db_value(value, expression, connection)  # type: ignore[arg-type]  # json.loads takes bytes too
        return value

    def get_transform(self, name: str) -> type[Transform] | KeyTransformFactory:  # type: ignore[override]  # as JSONField's
        transform = super().get_transform(name)
        if type(transform) is KeyTransformFactory:
            return _JSONKeyTransformFactory(name)
        return transform

    def get_lookup(self, lookup_name: str) -> type[Lookup[Any]] | None:
        lookup = super().get_lookup(lookup_name)
        if lookup is None or lookup_name == "isnull":
            return lookup
        return _on_jsonb(lookup)  # type: ignore[arg-type]  # mypy: a class defining __hash__ is "not Hashable"
