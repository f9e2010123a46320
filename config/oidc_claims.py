"""Pure functions for OpenID Connect claims (imported by settings: no Django models here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

ROLES = ("admin", "compliance", "user")


def parse_role_map(raw: str) -> dict[str, str]:
    """`"attest-admins=admin, Compliance=compliance"` -> {"attest-admins": "admin", ...}."""
    mapping: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        group, sep, role = item.partition("=")
        group, role = group.strip(), role.strip().lower()
        if not sep or not group or role not in ROLES:
            raise ValueError(
                f"bad OIDC_ROLE_MAP entry {item.strip()!r}: use idp-group=admin|compliance|user"
            )
        mapping[group] = role
    return mapping


def claim_groups(claims: Mapping, claim: str) -> list[str]:
    """The group names in a claim: a list of strings, or one string. A Keycloak group path
    (`/hospital/attest-admins`) counts only as the whole path: its last segment alone would
    match a group of that name anywhere in the tree (`/sandbox/attest-admins`, made by
    whoever may create groups there), issue 19."""
    value = claims.get(claim)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]


def roles_from_claims(
    claims: Mapping, *, role_map: Mapping[str, str], claim: str, default_role: str = ""
) -> list[str]:
    """The roles the claims map to (sorted, unique); the default role when none maps."""
    roles = sorted({role_map[g] for g in claim_groups(claims, claim) if g in role_map})
    if not roles and default_role:
        roles = [default_role]
    return roles
