"""Owns the identity of a caller: user, company (workspace) and role."""

from __future__ import annotations

from dataclasses import dataclass

# Strongest first. system and root pass every role check; guest is read-only.
ROLES = ("system", "root", "admin", "superuser", "user", "annotator", "guest")
SUPER_ROLES = frozenset({"system", "root"})
# The model registry speaks of SUPERVISOR and USER: the first four roles are supervisors.
REGISTRY_SUPERVISOR_ROLES = frozenset({"system", "root", "admin", "superuser"})


@dataclass(frozen=True)
class Identity:
    """Who is calling: resolved by the dispatcher from a token or Basic credentials."""

    user: str
    company: str
    role: str
    user_name: str = ""
    company_name: str = ""
    # What a token issued to this identity depends on: the access key it signed in with ("" for a
    # password) and the user's token_version then. Revoking the key or bumping the version ends it.
    credential: str = ""
    token_version: int = 0

    @property
    def registry_role(self) -> str:
        return "SUPERVISOR" if self.role in REGISTRY_SUPERVISOR_ROLES else "USER"
