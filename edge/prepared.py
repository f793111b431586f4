"""The door's statements, compiled once and run on the database driver's own cursor.

An identify and a check-in run eight statements between them, each a lookup by index. SQLite
answers one in a few microseconds; SQLAlchemy's Core execution around it (an execution context,
events, parameter and result processing) costs about ten times that, and on the hub's one
interpreter lock that overhead was a fifth of a check-in's cost (docs/door.md, "Where the time
goes").

So on SQLite a ``Prepared`` statement is compiled by SQLAlchemy once and then run as that SQL on
the DB-API connection of the caller's transaction, its parameters and results converted by the
columns' own type processors (the same ones SQLAlchemy applies), so a row reads exactly as
SQLAlchemy would have returned it. Any other database runs the statement through SQLAlchemy as
usual: the shortcut is for the appliance's own database only.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None

# What a statement runs in: a transaction's ORM session, or (the door's own writes and reads,
# which need no ORM) its connection.
Db = Session | Connection


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters, in the order of the SQL's placeholders
    bind: tuple[Processor, ...]
    fixed: dict[str, Any]  # literal values the statement itself carries
    row: Any  # a namedtuple class for result rows, or None for a statement that returns none
    results: tuple[Processor, ...]


class Prepared:
    """One Core statement (a select, insert or update) on a hot path: the door's, the phones' flush."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None  # for SQLite, built on first use

    def rows(self, db: Db, params: dict[str, Any]) -> list[Any]:
        """The result rows, with attribute access by column name, as SQLAlchemy's ``Row``."""
        conn = _connection(db)
        if conn.dialect.name != "sqlite":
            return list(conn.execute(self.statement, params))  # type: ignore[call-overload]
        compiled = self._for(conn.dialect, params)
        cursor = conn.connection.driver_connection.execute(compiled.sql, _bound(compiled, params))  # type: ignore[union-attr]
        make, processors = compiled.row._make, compiled.results
        return [make([v if p is None else p(v) for p, v in zip(processors, raw, strict=True)]) for raw in cursor]

    def first(self, db: Db, params: dict[str, Any]) -> Any | None:
        found = self.rows(db, params)
        return found[0] if found else None

    def run(self, db: Db, params: dict[str, Any] | list[dict[str, Any]]) -> int:
        """An insert or update, once per parameter set. Returns the rows an update touched (an
        insert's count is whatever the driver gives: -1 on PostgreSQL)."""
        conn = _connection(db)
        if conn.dialect.name != "sqlite":
            return int(conn.execute(self.statement, params).rowcount)  # type: ignore[call-overload]
        compiled = self._for(conn.dialect, params if isinstance(params, dict) else params[0])
        driver = conn.connection.driver_connection
        if isinstance(params, dict):
            cursor = driver.execute(compiled.sql, _bound(compiled, params))  # type: ignore[union-attr]
        else:
            cursor = driver.executemany(compiled.sql, [_bound(compiled, p) for p in params])  # type: ignore[union-attr]
        return int(cursor.rowcount)

    def _for(self, dialect: Dialect, params: dict[str, Any]) -> _Compiled:
        if self._compiled is None:
            # An insert without values() takes the columns its first parameters name, as
            # SQLAlchemy does for each run; every later run must name them (the door's rows are
            # built by one function each).
            self._compiled = _compile(self.statement, dialect, list(params))
        return self._compiled


def _connection(db: Db) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _bound(compiled: _Compiled, params: dict[str, Any]) -> tuple[Any, ...]:
    values = []
    for name, process in zip(compiled.names, compiled.bind, strict=True):
        value = params[name] if name in params else compiled.fixed[name]
        values.append(value if process is None else process(value))
    return tuple(values)


def _compile(statement: ClauseElement, dialect: Dialect, keys: list[str]) -> _Compiled:
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=keys))
    if not compiled.positional:
        raise ValueError(f"{dialect.name} takes named parameters: run the statement through SQLAlchemy")
    if "POSTCOMPILE" in compiled.string:  # an expanding IN, a literal_execute parameter
        raise ValueError(f"part of this statement is rendered anew for each run: {compiled.string}")
    names = tuple(compiled.positiontup or ())
    binds = compiled.binds
    bind = tuple(binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    fixed = {name: binds[name].effective_value for name in names if not binds[name].required}
    columns = getattr(statement, "selected_columns", None)
    if columns is None:
        return _Compiled(compiled.string, names, bind, fixed, None, ())
    results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    return _Compiled(compiled.string, names, bind, fixed, namedtuple("Row", list(columns.keys())), results)
