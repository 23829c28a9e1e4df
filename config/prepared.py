"""Queries built and compiled once per process, run with new values each time.

Building a queryset and compiling it to SQL costs Django about half a
millisecond a query, paid on every request, most of a page's time when the
database answers in microseconds. The tenant's home runs the same queries on
every view, each time for another tenancy or another hour. A ``Prepared``
query is built once, with a ``Param`` where such a value goes; its SQL, and
what the compiler worked out about the columns (the model instances, related
objects and annotations the rows become), are kept per database. A run copies
the queryset, puts the values into the kept parameters, executes, and reads
the rows as the queryset always would.

Keep to what stays the same between runs: anything that changes (the time,
an id) must be a ``Param``, never a value taken while building. A queryset
derived from a run (``count()``, ``filter()``) is compiled as usual.

On SQLite the query's constants (a status, a kind: whole numbers and plain
words) are written into its SQL rather than bound. SQLite plans a statement
again, from its text, on every run that binds a value it might plan by (one
compared with a column a partial index is filtered on, as ``status =
'scheduled'`` is): the tenant home's main query took 0.15 ms to run so, and
0.02 ms with its constants in the text. What is bound is then only the
``Param`` values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Expression, Field, QuerySet
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.query import Query

# What SQLCompiler.as_sql works out besides the SQL, and its iterators read.
_COMPILER_STATE = (
    "select",
    "klass_info",
    "annotation_col_map",
    "col_count",
    "has_extra_select",
    "where",
    "having",
    "qualify",
)


@dataclass(frozen=True)
class _Slot:
    """Where a ``Param``'s value goes among the compiled SQL's parameters."""

    name: str
    output_field: Field[Any, Any]

    def bind(self, values: Mapping[str, object], connection: BaseDatabaseWrapper) -> object:
        return self.output_field.get_db_prep_value(values[self.name], connection, prepared=False)


class Param(Expression):
    """A value given to each run of a ``Prepared`` query, of the type ``output_field``."""

    def __init__(self, name: str, output_field: Field[Any, Any]) -> None:
        super().__init__(output_field=output_field)
        self.name = name

    def __repr__(self) -> str:
        return f"Param({self.name!r})"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        return "%s", (_Slot(self.name, self.output_field),)

    def get_group_by_cols(self) -> list[Any]:
        return []  # a constant in each run, like Value


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    names: frozenset[str]
    state: dict[str, object]
    converters: WeakKeyDictionary[BaseDatabaseWrapper, dict[int, Any]] = field(
        default_factory=WeakKeyDictionary
    )


class Prepared[R]:
    """``build()`` (a queryset with ``Param`` placeholders), built on the first run;
    a run gives the queryset's results as a list of ``R``."""

    def __init__(self, build: Callable[[], QuerySet[Any, Any]]) -> None:
        self._build = build
        self._queryset: QuerySet[Any, Any] | None = None
        self._compiled: dict[str, _Compiled] = {}

    def run(self, **values: object) -> list[R]:
        if self._queryset is None:
            self._queryset = self._build()
        queryset = self._queryset.all()
        query = queryset.query
        query.__class__ = _BoundQuery
        query.__dict__["_binding"] = (self, values)
        return list(queryset)

    def _bind(self, compiler: SQLCompiler, values: Mapping[str, object]) -> SQLCompiler:
        alias = compiler.connection.alias
        compiled = self._compiled.get(alias)
        if compiled is None:
            sql, slotted = compiler.as_sql()
            if compiler.connection.vendor == "sqlite":
                sql, slotted = _inline_constants(sql, tuple(slotted))
            state = {name: getattr(compiler, name) for name in _COMPILER_STATE}
            names = frozenset(p.name for p in slotted if isinstance(p, _Slot))
            compiled = _Compiled(sql=sql, params=tuple(slotted), names=names, state=state)
            self._compiled[alias] = compiled
        else:
            for name, value in compiled.state.items():
                setattr(compiler, name, value)
        if compiled.names != values.keys():
            raise TypeError(f"this query takes {sorted(compiled.names)}, given {sorted(values)}")
        connection = compiler.connection
        params: tuple[Any, ...] = tuple(
            p.bind(values, connection) if isinstance(p, _Slot) else p for p in compiled.params
        )
        # The instance's own as_sql: execute_sql asks it for the SQL of this run.
        compiler.as_sql = lambda *args, **kwargs: (compiled.sql, params)  # type: ignore[method-assign]
        self._keep_converters(compiler, compiled)
        return compiler

    @staticmethod
    def _keep_converters(compiler: SQLCompiler, compiled: _Compiled) -> None:
        """The row converters of the selected columns, looked up once per connection
        (the backend's are the connection's methods)."""
        columns = [column[0] for column in compiler.select[: compiler.col_count]]
        connection = compiler.connection
        kept = compiled.converters.get(connection)
        if kept is None:
            kept = compiled.converters[connection] = compiler.get_converters(columns)
        look_up = compiler.get_converters

        def get_converters(expressions: list[Any]) -> dict[int, Any]:
            if len(expressions) == len(columns) and all(
                a is b for a, b in zip(expressions, columns, strict=True)
            ):
                return kept
            return look_up(expressions)

        compiler.get_converters = get_converters  # type: ignore[method-assign]


_PLACEHOLDER = re.compile(r"%%|%s")
_WORD = re.compile(r"[A-Za-z0-9_]*")


def _literal(value: object) -> str | None:
    """``value`` as SQL text, if it is a whole number or a plain word; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        text = str.__str__(value)  # a choice's own value, not its label
        if _WORD.fullmatch(text):
            return f"'{text}'"
    return None


def _inline_constants(sql: str, params: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """``sql`` with each constant parameter that ``_literal`` can write in its text."""
    pieces: list[str] = []
    kept: list[Any] = []
    at = 0
    values = iter(params)
    for match in _PLACEHOLDER.finditer(sql):
        if match.group() == "%%":
            continue
        try:
            value = next(values)
        except StopIteration:
            return sql, params  # not the SQL these parameters go with: left as it is
        literal = None if isinstance(value, _Slot) else _literal(value)
        pieces.append(sql[at : match.start()])
        if literal is None:
            pieces.append("%s")
            kept.append(value)
        else:
            pieces.append(literal)
        at = match.end()
    if next(values, _END) is not _END:
        return sql, params
    pieces.append(sql[at:])
    return "".join(pieces), tuple(kept)


_END = object()


class _BoundQuery(Query):
    """A run's copy of a prepared query: its compiler comes with the kept SQL."""

    _binding: tuple[Prepared[Any], Mapping[str, object]]

    def get_compiler(
        self,
        using: str | None = None,
        connection: BaseDatabaseWrapper | None = None,
        elide_empty: bool = True,
    ) -> SQLCompiler:
        prepared, values = self._binding
        return prepared._bind(super().get_compiler(using, connection, elide_empty), values)

    def clone(self) -> Query:
        # Whatever is derived from a run is another query, compiled as usual.
        obj = super().clone()
        obj.__class__ = Query
        del obj.__dict__["_binding"]
        return obj
