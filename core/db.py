"""Hot-path reads whose SQL Django compiles once per process.

Compiling a queryset costs Python time on every call: for a four-table `select_related` read of one row, about 1 ms,
several times what PostgreSQL needs to run it. `PreparedQuery` compiles a queryset once per database alias, with
sentinel values standing where the parameters go, and each call then runs that SQL with the real values and builds the
instances exactly as the queryset would: Django's own row converters, `Model.from_db` and related populators. What
comes back is what `queryset` would have returned; only the compiling is skipped.

Parameters are the values a lookup sends as they are (integers, strings, booleans): values the backend must adapt
first (dates and times on SQLite, say) are not accepted, so that the SQL and its parameters never disagree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import connections, models
from django.db.models.query import get_related_populators

M = TypeVar("M", bound=models.Model)

_PLAIN = (int, str, bool)


class PreparedQuery(Generic[M]):
    """`build(*sentinels)` returns the queryset; `sentinels` are values of the parameters' types that appear nowhere
    else in it (each must come out exactly once among the compiled SQL's parameters)."""

    def __init__(self, build: Callable[..., models.QuerySet[M]], *sentinels: Any) -> None:
        for sentinel in sentinels:
            if type(sentinel) not in _PLAIN:
                raise TypeError(f"a prepared parameter is an int, a str or a bool, not {type(sentinel).__name__}")
        self._build = build
        self._sentinels = sentinels
        self._compiled: dict[str, tuple[Any, str, list[Any], list[int]]] = {}
        self._lock = threading.Lock()

    def _compile(self, alias: str) -> tuple[Any, str, list[Any], list[int]]:
        compiled = self._compiled.get(alias)
        if compiled is None:
            with self._lock:
                queryset = self._build(*self._sentinels)
                extras = (getattr(queryset, name) for name in ("_prefetch_related_lookups", "_known_related_objects"))
                if any(extras) or queryset.query.extra_select:
                    raise ValueError("a prepared query has no prefetch, known related objects or extra select")
                compiler = queryset.query.get_compiler(using=alias)
                sql, params = compiler.as_sql()
                params = list(params)
                positions = []
                for sentinel in self._sentinels:
                    found = [i for i, p in enumerate(params) if type(p) is type(sentinel) and p == sentinel]
                    if len(found) != 1:
                        raise ValueError(f"sentinel {sentinel!r} is found {len(found)} times in the compiled query")
                    positions.append(found[0])
                compiled = self._compiled[alias] = (compiler, sql, params, positions)
        return compiled

    def all(self, *values: Any, using: str = "default") -> list[M]:
        if len(values) != len(self._sentinels):
            raise TypeError(f"expected {len(self._sentinels)} values, got {len(values)}")
        compiler, sql, template, positions = self._compile(using)
        params = list(template)
        for position, sentinel, value in zip(positions, self._sentinels, values, strict=True):
            if type(value) is not type(sentinel):
                raise TypeError(f"expected {type(sentinel).__name__}, got {type(value).__name__}")
            params[position] = value
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not rows:
            return []
        select, klass_info = compiler.select, compiler.klass_info
        model_cls = klass_info["model"]
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        init_list = [column[0].target.attname for column in select[start:end]]
        populators = get_related_populators(klass_info, select, using)  # type: ignore[call-arg]  # Django 5.2's signature
        objects = []
        for row in compiler.results_iter([rows]):
            obj = model_cls.from_db(using, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            for name, position in (compiler.annotation_col_map or {}).items():
                setattr(obj, name, row[position])
            objects.append(obj)
        return objects

    def first(self, *values: Any, using: str = "default") -> M | None:
        """The first row (give the queryset its order and `[:1]`), or None."""
        found = self.all(*values, using=using)
        return found[0] if found else None
