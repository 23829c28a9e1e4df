"""bench/money.py runs the rating path in several forked processes: each needs its own connection."""

from __future__ import annotations

import os

import pytest
from django.db import connection

from bench.money import in_workers

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="a forked process sharing a connection only breaks PostgreSQL's socket protocol",
)


def backend_pids(queries: int) -> set[int]:
    pids = set()
    for _ in range(queries):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids.add(cursor.fetchone()[0])
    return pids


@pytest.mark.django_db(transaction=True)
# Earlier tests leave idle threads in this process (bench/money.py has none
# left once its pool is closed), which makes Python warn about any fork.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_workers_each_use_a_connection_of_their_own() -> None:
    # given: the parent has used the database, so its pool holds an idle connection
    parent = backend_pids(1)

    # when
    results, _elapsed = in_workers(backend_pids, [50, 50], timeout=60)

    # then: two workers, two PostgreSQL backends, neither of them the parent's
    first, second = results
    assert len(first) == len(second) == 1
    assert not first & second
    assert not (first | second) & parent
    # and the parent still has a working connection afterwards
    assert backend_pids(1)
