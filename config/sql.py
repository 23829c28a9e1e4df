"""Lookups for a batch's thousand values sent as one parameter on PostgreSQL.

A list of placeholders (``IN (%s, %s, ...)``) costs Django and psycopg Python
time per value on every query, more than the database spends answering; one
array literal, joined here and cast by the query, costs one parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Lookup


class IdIn(Lookup):
    """``lhs IN (ids)`` for a batch's primary keys; on PostgreSQL ``= ANY`` of one
    ``bigint[]`` parameter."""

    lookup_name = "id_in"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        ids = [int(v) for v in self.rhs]
        if not ids:
            return "1 = 0", ()
        return f"{lhs} IN ({', '.join(['%s'] * len(ids))})", (*lhs_params, *ids)

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s::bigint[])", (*lhs_params, pg_array(int(v) for v in self.rhs))


def pg_array(values: Iterable[int | datetime]) -> str:
    """A PostgreSQL array literal of integers or aware datetimes, to be cast by the
    query (``%s::bigint[]``, ``%s::timestamptz[]``): joined here in one pass, where
    the driver's array adapter spends milliseconds on a batch's thousand values."""
    return (
        "{" + ",".join(v.isoformat() if isinstance(v, datetime) else str(v) for v in values) + "}"
    )
