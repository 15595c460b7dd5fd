"""Who may see what: an operator's scope, resolved once per request.

- alliance operators (superusers and the "Alliance operators" group) see everything;
- bank operators and auditors see the rows of their own bank(s), auditors read-only;
- staff with no role see nothing.

Which banks a user operates for is known to `members` (its `BankOperator` rows); it registers itself as the provider
in its AppConfig, so this module stays free of domain imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Exists, OuterRef, Q

ALLIANCE_OPERATORS = "Alliance operators"
BANK_OPERATORS = "Bank operators"
BANK_AUDITORS = "Bank auditors"
ROLE_GROUPS = (ALLIANCE_OPERATORS, BANK_OPERATORS, BANK_AUDITORS)


@dataclass(frozen=True)
class BankRoles:
    """What a provider knows of a user: banks operated (read-write) and banks audited (read-only)."""

    operated: frozenset[int] = frozenset()
    audited: frozenset[int] = frozenset()


@dataclass(frozen=True)
class OperatorScope:
    everything: bool
    bank_ids: frozenset[int]
    writable_bank_ids: frozenset[int]

    @property
    def nothing(self) -> bool:
        return not self.everything and not self.bank_ids

    def covers(self, bank_id: int | None) -> bool:
        return self.everything or (bank_id is not None and bank_id in self.bank_ids)

    def can_write(self, bank_id: int | None) -> bool:
        return self.everything or (bank_id is not None and bank_id in self.writable_bank_ids)


NOTHING = OperatorScope(False, frozenset(), frozenset())
EVERYTHING = OperatorScope(True, frozenset(), frozenset())

BankRolesProvider = Callable[[AbstractBaseUser], BankRoles]
_providers: list[BankRolesProvider] = []


def register_bank_roles_provider(provider: BankRolesProvider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def is_alliance_operator(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    return user.groups.filter(name=ALLIANCE_OPERATORS).exists()  # type: ignore[union-attr]


def operator_scope(user: AbstractBaseUser | AnonymousUser) -> OperatorScope:
    """The user's scope, cached on the user object for the request."""
    cached = getattr(user, "_mengka_scope", None)
    if isinstance(cached, OperatorScope):
        return cached
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        scope = NOTHING
    elif is_alliance_operator(user):
        scope = EVERYTHING
    else:
        operated: set[int] = set()
        audited: set[int] = set()
        for provider in _providers:
            roles = provider(user)  # type: ignore[arg-type]
            operated |= roles.operated
            audited |= roles.audited
        scope = OperatorScope(False, frozenset(operated | audited), frozenset(operated))
    user._mengka_scope = scope  # type: ignore[union-attr]
    return scope


def _path_is_many_valued(model: type[models.Model], path: str) -> bool:
    current: type[models.Model] = model
    for part in path.split("__"):
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist:
            return False
        if field.many_to_many or field.one_to_many:
            return True
        if field.related_model is None:
            return False
        current = field.related_model  # type: ignore[assignment]
    return False


@dataclass(frozen=True)
class ScopePath:
    """A path to the member bank through a reverse foreign key whose related rows must also meet `where` (a lookup from
    those rows): read as the model's key `IN` the keys of the related rows that reach the banks, a subquery that does
    not refer to the model's row. For a model whose related rows the database cannot read beside it in a correlated
    subquery, nor join along the path by key alone: on Citus, a coordinator table's (the ledger's transactions')
    distributed rows (entries) joined to their co-located accounts by spread too (docs/scaling.md, "Citus")."""

    path: str
    where: Q


ScopeField = str | ScopePath | tuple[str | ScopePath, ...]


def _paths(scope_field: ScopeField) -> tuple[str | ScopePath, ...]:
    return (scope_field,) if isinstance(scope_field, str | ScopePath) else tuple(scope_field)


def scope_queryset(
    queryset: models.QuerySet[Any], scope: OperatorScope, scope_field: ScopeField | None, alliance_only: bool
) -> models.QuerySet[Any]:
    """Limits `queryset` to `scope`. `scope_field` is the ORM path (or several, any of which suffices) from the model
    to its member bank: a payment belongs to its issuer, its acquirer and its merchant's sponsor bank."""
    if scope.everything:
        return queryset
    if scope.nothing or alliance_only or not scope_field:
        return queryset.none()
    condition = Q()
    for path in _paths(scope_field):
        if isinstance(path, ScopePath):
            condition |= _in_along(queryset.model, path, scope.bank_ids)
        elif _path_is_many_valued(queryset.model, path):
            condition |= Q(_exists_along(queryset.model, path, scope.bank_ids))
        else:
            condition |= Q(**{f"{path}__in": scope.bank_ids})
    return queryset.filter(condition)


def _exists_along(model: type[models.Model], path: str, bank_ids: frozenset[int]) -> Exists:
    """`EXISTS` a row at the far side of the path's first many-valued step that reaches one of `bank_ids`: a semi-join,
    so a row with many matches (a cardholder with several cards at the bank) is found once, without a `DISTINCT` or an
    `IN` over every match. Through a reverse foreign key (a cardholder's cards) the subquery starts at the related rows;
    otherwise (a many-to-many) it is correlated on the model's own key."""
    parts = path.split("__")
    current = model
    for index, part in enumerate(parts):
        field = current._meta.get_field(part)
        if field.many_to_many:
            break
        if field.one_to_many and isinstance(field, models.ManyToOneRel):
            link = field.field  # the foreign key on the related model
            target = link.target_field
            outer = "__".join([*parts[:index], *([] if target.primary_key else [target.name])]) or "pk"
            rest = "__".join(parts[index + 1 :]) or "pk"
            related = link.model._base_manager  # the join of a lookup applies no manager's filter either
            return Exists(related.filter(**{link.name: OuterRef(outer), f"{rest}__in": bank_ids}))
        current = field.related_model  # type: ignore[assignment]
    return Exists(model._base_manager.filter(pk=OuterRef("pk"), **{f"{path}__in": bank_ids}))


def _in_along(model: type[models.Model], along: ScopePath, bank_ids: frozenset[int]) -> Q:
    """The model's rows whose key is among those of the related rows (through the path's reverse foreign key) that
    reach one of `bank_ids` and meet `along.where`: a semi-join, as `EXISTS` is, each row found once."""
    parts = along.path.split("__")
    current = model
    for index, part in enumerate(parts):
        field = current._meta.get_field(part)
        if field.one_to_many and isinstance(field, models.ManyToOneRel):
            link = field.field  # the foreign key on the related model
            outer = "__".join([*parts[:index], link.target_field.name])
            rest = "__".join(parts[index + 1 :]) or "pk"
            related = link.model._base_manager.filter(along.where, **{f"{rest}__in": bank_ids})
            return Q(**{f"{outer}__in": related.values(link.attname)})
        if field.related_model is None or field.many_to_many:
            break
        current = field.related_model  # type: ignore[assignment]
    raise ValueError(f"{along.path!r} does not pass through a reverse foreign key of {model.__name__}")


def bank_ids_of(obj: models.Model, scope_field: ScopeField) -> set[int]:
    """The member bank ids an instance belongs to, following every path of `scope_field`."""
    banks: set[int] = set()
    for path in _paths(scope_field):
        banks |= _bank_ids_along(obj, path.path if isinstance(path, ScopePath) else path)
    return banks


def _bank_ids_along(obj: models.Model, scope_field: str) -> set[int]:
    objects: Iterable[Any] = [obj]
    parts = scope_field.split("__")
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        next_objects: list[Any] = []
        for current in objects:
            if current is None:
                continue
            field = current._meta.get_field(part)
            if field.many_to_many or field.one_to_many:
                manager = getattr(current, field.get_accessor_name() if field.one_to_many else part)
                values = list(manager.all()) if current.pk else []
                next_objects.extend(v.pk for v in values) if last else next_objects.extend(values)
            elif last:
                next_objects.append(getattr(current, field.attname) if field.is_relation else getattr(current, part))
            else:
                next_objects.append(getattr(current, part))
        objects = next_objects
    return {int(value) for value in objects if value is not None}
