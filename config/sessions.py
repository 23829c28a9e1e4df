"""Sessions in the database (``SESSION_ENGINE``), read by a query compiled once.

Every signed-in request reads its session first; Django's own store builds
and compiles that query each time. This store reads the same row, with the
same expiry rule, through ``config.prepared``. Writes are Django's.
"""

from __future__ import annotations

from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.db.models import CharField, DateTimeField
from django.utils import timezone

from .prepared import Param, Prepared

_SESSION: Prepared[Session] = Prepared(
    lambda: Session.objects.filter(
        session_key=Param("session_key", CharField()),
        expire_date__gt=Param("now", DateTimeField()),
    )
)


class SessionStore(db.SessionStore):
    def _get_session_from_db(self) -> Session | None:
        found = _SESSION.run(session_key=self.session_key, now=timezone.now())
        if not found:
            self._session_key = None
            return None
        return found[0]
