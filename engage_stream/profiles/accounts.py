"""Account-level definitions (reference §1.7) as two plain ones the engine already runs.

An account audience mixes account conditions (account traits, account computed traits,
account audiences) with user-level rows wrapped in `users: any|all|none`. Each wrapped row
becomes a hidden *user* audience (`__acct__<audience>__<n>`), evaluated on every user like
any audience, in real time; a user's hidden memberships are sent to each account the user
belongs to (`profiles.control.AccountFlags`), where the account keeps them per user and
turns them into three account traits — `…__any`, `…__all`, `…__none` — that the account
audience, rewritten, reads as ordinary trait rows. Account computed traits are ordinary
computed traits evaluated on the account over the events of all its users (each user event
a definition reads is forwarded to the user's accounts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engage_stream.definitions.catalog import AnyDefinition, Catalog
from engage_stream.definitions.models import (
    AudienceDefinition,
    GroupCondition,
    Op,
    TraitCondition,
    UsersCondition,
)

HIDDEN = "__acct__"  # key prefix of the hidden user audiences and the account flag traits
# On a user's event as its accounts see it: the user's profile id, so an account computed
# trait can count distinct users (`unique_count` of `$user`: active users).
USER_PROPERTY = "$user"


def is_hidden(key: str) -> bool:
    return key.startswith(HIDDEN)


@dataclass
class Split:
    """A catalog's definitions by the collection they are evaluated on."""

    users: list[AnyDefinition] = field(default_factory=list)  # incl. the hidden audiences
    accounts: list[AnyDefinition] = field(default_factory=list)  # rewritten account ones
    # hidden audience key -> (account audience key, mode)
    flags: dict[str, tuple[str, str]] = field(default_factory=dict)
    account_events: set[str] = field(default_factory=set)  # events account traits read

    def versions(self, catalog_versions: Mapping[str, int], users: bool) -> dict[str, int]:
        """The versions a profile stage keeps each collection's profiles in step with: a
        hidden audience at its account audience's version."""
        out: dict[str, int] = {}
        for d in self.users if users else self.accounts:
            parent = self.flags[d.key][0] if d.key in self.flags else d.key
            if parent in catalog_versions:
                out[d.key] = catalog_versions[parent]
        for k, v in catalog_versions.items():  # inactive ones, as the catalog lists them
            if v < 0 and k not in out:
                out[k] = v
        return out


def split(catalog: Catalog) -> Split:
    out = Split()
    for d in catalog.active():
        if d.collection == "users":
            out.users.append(d)
            continue
        # an account has no user id or email: the identified-members gate is for users
        if isinstance(d, AudienceDefinition):
            rows = [_rewrite(row, d, out) for row in d.conditions]
            out.accounts.append(
                d.model_copy(update={"conditions": rows, "include_anonymous": True})
            )
        else:
            out.accounts.append(d.model_copy(update={"include_anonymous": True}))
            out.account_events.add(d.event)
    return out


def _rewrite(row: Any, parent: AudienceDefinition, out: Split) -> Any:
    if isinstance(row, GroupCondition):
        return row.model_copy(update={"group": [_rewrite(r, parent, out) for r in row.group]})
    if not isinstance(row, UsersCondition):
        return row
    key = f"{HIDDEN}{parent.key}__{len(out.flags)}"
    hidden = AudienceDefinition.model_validate(
        {"key": "hidden", "include_anonymous": True, "conditions": row.model_dump()["conditions"]}
    ).model_copy(update={"key": key, "include_history": parent.include_history})
    out.users.append(hidden)
    out.flags[key] = (parent.key, row.users)
    return TraitCondition.model_validate(
        {"join": row.join, "trait": f"{key}__{row.users}", "operator": Op.equals, "value": True}
    )


def flag_traits(
    flags: Mapping[str, tuple[str, str]],
    members: Mapping[str, Mapping[str, Any]],
    users: int,
) -> dict[str, tuple[bool, int]]:
    """The account traits the rewritten audiences read: for each hidden audience, whether
    any / all / none of the account's `users` are in it (`members`: user -> key -> [in,
    since when]), and since when: the latest of the users' changes of it (the one that
    settled it, whatever order the users' messages arrived in)."""
    out: dict[str, tuple[bool, int]] = {}
    for key, (_, mode) in flags.items():
        held = [m[key] for m in members.values() if key in m]
        n = sum(1 for v, _ in held if v)
        at = max((t for _, t in held), default=0)
        if mode == "any":
            out[f"{key}__any"] = (n > 0, at)
        elif mode == "all":
            out[f"{key}__all"] = (users > 0 and n >= users, at)
        else:
            out[f"{key}__none"] = (n == 0, at)
    return out
