"""Owns users, companies and credentials: creating them, checking them and bootstrapping a fresh install."""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mongoengine.errors import NotUniqueError

from apiserver.apierrors import errors
from apiserver.bll.auth.identity import ROLES, SUPER_ROLES, Identity
from apiserver.bll.auth.secrets import SecretChecker, generate_access_key, generate_secret_key, hash_secret
from apiserver.bll.auth.throttle import SignInThrottle, ThrottleLimits
from apiserver.bll.query import listing_filter, page_bounds
from apiserver.bll.server_settings import configured_or_generated
from apiserver.config.settings import AuthSettings
from apiserver.database.model.auth import Company, Credentials, User
from apiserver.database.model.base import utcnow
from apiserver.database.store import store_of

log = logging.getLogger(__name__)

ADMIN_KEY_ENV = "APISERVER_ADMIN_ACCESS_KEY"
ADMIN_SECRET_ENV = "APISERVER_ADMIN_SECRET_KEY"


def _set_preferences(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """ClearML's preference update: each top-level key is a path (``a.b`` sets ``b`` inside ``a``,
    creating the objects on the way) whose value replaces what was there, null included."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        parts = key.split(".")
        if any(not part for part in parts):
            raise errors.bad_request.InvalidPreferencesUpdate(f"empty segment in the key {key!r}", key=key,
                                                              field="preferences")
        target = out
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[parts[-1]] = value
    return out


@dataclass(frozen=True)
class NewCredentials:
    access_key: str
    secret_key: str
    label: str | None = None


class AuthBLL:
    """Identity operations over the database; one instance per app."""

    def __init__(self, bcrypt_rounds: int = 12, throttle: ThrottleLimits | None = None):
        self.bcrypt_rounds = bcrypt_rounds
        self._checker = SecretChecker(bcrypt_rounds)
        self.throttle = SignInThrottle(throttle or ThrottleLimits(60, 10, 100))
        # Called after a change that ends tokens (role, password, key), to drop this process's cache.
        self.on_tokens_revoked: list = []

    # -- companies and users ------------------------------------------------------------------

    def ensure_company(self, company_id: str, name: str) -> Company:
        company = Company.objects(id=company_id).first()
        if company is None:
            try:
                company = Company(id=company_id, name=name).save(force_insert=True)
            except NotUniqueError:
                company = Company.objects(id=company_id).first() or Company.objects(name=name).first()
        return company

    def identity_of(self, user: User, credential: str = "") -> Identity:
        company = Company.objects(id=user.company).only("name").first()
        return Identity(user=user.id, company=user.company, role=user.role, user_name=user.name,
                        company_name=company.name if company else "", credential=credential,
                        token_version=user.token_version or 0)

    def _tokens_revoked(self) -> None:
        for hook in self.on_tokens_revoked:
            hook()

    def token_problem(self, identity: Identity) -> str | None:
        """Why a token issued to ``identity`` no longer holds (key revoked, role or password changed)."""
        user = User.objects(id=identity.user).only("company", "token_version", "role").first()
        if user is None or user.company != identity.company:
            return "the user no longer exists"
        if (user.token_version or 0) != identity.token_version or user.role != identity.role:
            return "the user's role or password changed"
        if identity.credential and not Credentials.objects(access_key=identity.credential, user=identity.user,
                                                           revoked=None).only("id").first():
            return "the key it was issued for was revoked"
        return None

    def create_user(self, company: str, name: str, role: str = "user", email: str | None = None,
                    username: str | None = None, password: str | None = None,
                    user_id: str | None = None) -> User:
        if role not in ROLES:
            raise errors.bad_request.ValidationError(f"role must be one of {list(ROLES)}", field="role")
        if not Company.objects(id=company).count():
            raise errors.bad_request.InvalidCompany(company=company)
        user = User(company=company, name=name, role=role, email=email or None, username=username or None,
                    password_hash=hash_secret(password, self.bcrypt_rounds) if password else None)
        if user_id:
            user.id = user_id
        try:
            return user.save(force_insert=True)
        except NotUniqueError:
            raise errors.bad_request.UserIdExists("a user with this id, email or username exists") from None

    def get_user(self, user_id: str, company: str) -> User:
        user = User.objects(id=user_id, company=company).first()
        if user is None:
            raise errors.bad_request.InvalidUserId(id=user_id)
        return user

    def set_role(self, caller: Identity, user_id: str, role: str) -> int:
        """Change a user's role; nobody grants or edits a role stronger than their own."""
        target = self.get_user(user_id, caller.company)
        self._check_can_grant(caller, role)
        self._check_can_grant(caller, target.role)
        if role == target.role:
            return 0
        updated = User.objects(id=user_id, company=caller.company).update(set__role=role, inc__token_version=1)
        self._tokens_revoked()
        return updated

    def rename_user(self, caller: Identity, user_id: str, name: str) -> int:
        """Change a user's display name: one's own, or (an admin) of a user whose role one may edit."""
        target = self.get_user(user_id, caller.company)
        if target.id != caller.user:
            if caller.role not in ROLES or ROLES.index(caller.role) > ROLES.index("admin"):
                raise errors.forbidden.RoleNotAllowed("only admins change other users' names")
            self._check_can_grant(caller, target.role)
        if name == target.name:
            return 0
        return User.objects(id=user_id, company=caller.company).update(set__name=name)

    def create_user_by(self, caller: Identity, name: str, role: str = "user", email: str | None = None,
                       username: str | None = None, password: str | None = None,
                       with_credentials: bool = False) -> tuple[User, NewCredentials | None]:
        self._check_can_grant(caller, role)
        user = self.create_user(caller.company, name, role, email=email, username=username, password=password)
        creds = self.create_credentials(user.id, user.company, label="created") if with_credentials else None
        return user, creds

    def create_user_in_company(self, caller: Identity, company: str, name: str, email: str, role: str = "user",
                               given_name: str | None = None, family_name: str | None = None) -> User:
        """ClearML's ``auth.create_user``: a user without credentials (impersonated by an admin, or
        signing in through the web app). Only system and root users name another company."""
        if company != caller.company and caller.role not in SUPER_ROLES:
            raise errors.forbidden.RoleNotAllowed("users are created in the caller's own company",
                                                  field="company")
        self._check_can_grant(caller, role)
        if User.objects(email=email).only("id").first() is not None:
            raise errors.bad_request.UserIdExists("a user with this email exists", field="email")
        full = " ".join(p for p in (given_name, family_name) if p)
        return self.create_user(company, name or full, role, email=email)

    def impersonated(self, caller: Identity, user_id: str) -> Identity:
        """The identity of ``user_id`` for an admin acting as that user (ClearML's
        ``X-ClearML-Impersonate-As``): a user of the caller's own company (any company for root and
        system) whose role is not stronger than the caller's."""
        if caller.role not in ROLES or ROLES.index(caller.role) > ROLES.index("admin"):
            raise errors.bad_request.ImpersonationError("impersonation not allowed", role=caller.role)
        query = {"id": user_id} if caller.role in SUPER_ROLES else {"id": user_id, "company": caller.company}
        user = User.objects(**query).first()
        if user is None:
            raise errors.bad_request.ImpersonationError("unknown user", user=user_id)
        if user.role in ROLES and ROLES.index(user.role) < ROLES.index(caller.role):
            raise errors.bad_request.ImpersonationError(
                f"a {caller.role} cannot act as a {user.role}", user=user_id)
        return self.identity_of(user)

    @staticmethod
    def _check_can_grant(caller: Identity, role: str) -> None:
        if role in ROLES and caller.role in ROLES and ROLES.index(role) < ROLES.index(caller.role):
            raise errors.forbidden.RoleNotAllowed(f"a {caller.role} cannot grant or edit the role {role}")

    @staticmethod
    def user_info(user: User) -> dict[str, Any]:
        return {"id": user.id, "name": user.name, "username": user.username, "email": user.email,
                "company": user.company, "role": user.role, "created": user.created}

    def list_users(self, company: str, id: list[str] | None = None, name: str | None = None,  # noqa: A002
                   page: int | None = None, page_size: int | None = None, **_: Any) -> list[dict[str, Any]]:
        flt = listing_filter({"id": id, "name": name, "search_hidden": True}, {"company": company},
                             store=store_of(User), lists=(), excludable=())
        query = User.objects(__raw__=flt)
        skip, limit = page_bounds(page, page_size)
        query = query.order_by("name", "id").skip(skip).limit(limit)
        return [self.user_info(u) for u in query]

    @staticmethod
    def company_members(company: str) -> list[dict[str, Any]]:
        """``organization.get_user_companies``' owners: every user of the company by name (no avatars kept)."""
        users = User.objects(company=company).only("id", "name").order_by("name", "id")
        return [{"id": u.id, "name": u.name, "avatar": None} for u in users]

    # -- preferences --------------------------------------------------------------------------

    MAX_PREFERENCES_BYTES = 256 * 1024

    def get_preferences(self, identity: Identity) -> dict[str, Any]:
        user = User.objects(id=identity.user, company=identity.company).only("preferences").first()
        return json.loads(user.preferences) if user and user.preferences else {}

    def set_preferences(self, identity: Identity, changes: dict[str, Any]) -> dict[str, Any]:
        """Set the caller's preferences at the paths ``changes`` names (see ``_set_preferences``)."""
        base = self.get_preferences(identity)
        merged = _set_preferences(base, changes)
        if merged == base:
            return {"updated": 0, "fields": {}}
        text = json.dumps(merged, separators=(",", ":"))
        if len(text) > self.MAX_PREFERENCES_BYTES:
            raise errors.bad_request.ValidationError(
                f"preferences are at most {self.MAX_PREFERENCES_BYTES} bytes of JSON",
                error_data={"field": "preferences", "rule": "maxLength"})
        updated = User.objects(id=identity.user, company=identity.company).update(set__preferences=text)
        return {"updated": int(bool(updated)), "fields": {"preferences": merged}}

    # -- credentials --------------------------------------------------------------------------

    def create_credentials(self, user: str, company: str, label: str | None = None,
                           access_key: str | None = None, secret_key: str | None = None) -> NewCredentials:
        access_key = access_key or generate_access_key()
        secret_key = secret_key or generate_secret_key()
        try:
            Credentials(access_key=access_key, secret_hash=hash_secret(secret_key, self.bcrypt_rounds),
                        user=user, company=company, label=label).save(force_insert=True)
        except NotUniqueError:
            raise errors.bad_request.ExpectedUniqueData("access key already exists") from None
        return NewCredentials(access_key, secret_key, label)

    def list_credentials(self, user: str, company: str) -> list[dict[str, Any]]:
        creds = Credentials.objects(user=user, company=company, revoked=None).order_by("created")
        return [{"access_key": c.access_key, "label": c.label, "last_used": c.last_used,
                 "last_used_from": None, "created": c.created} for c in creds]

    def edit_credentials(self, access_key: str, user: str, company: str, label: str | None) -> int:
        """Change the label of one of the caller's own active keys."""
        return Credentials.objects(access_key=access_key, user=user, company=company, revoked=None) \
            .update(set__label=label)

    def revoke_credentials(self, access_key: str, user: str, company: str) -> int:
        revoked = Credentials.objects(access_key=access_key, user=user, company=company, revoked=None) \
            .update(set__revoked=utcnow())
        if revoked:
            self._tokens_revoked()
        return revoked

    def authenticate_key(self, access_key: str, secret_key: str, address: str | None = None) -> Identity:
        """Identity of a key pair, or 401/22. Revoked keys fail at once (looked up every time).

        Every wrong or unknown key costs one bcrypt check and counts against the key and the address.
        """
        self.throttle.check(access_key, address)
        cred = Credentials.objects(access_key=access_key, revoked=None).first()
        ok = self._checker.check(secret_key, cred.secret_hash) if cred else self._checker.check_unknown(secret_key)
        user = User.objects(id=cred.user, company=cred.company).first() if ok else None
        if user is None:
            self.throttle.failed(access_key, address)
            raise errors.unauthorized.InvalidCredentials()
        return self.identity_of(user, credential=access_key)

    def authenticate_basic(self, name: str, secret: str, address: str | None = None) -> Identity:
        """HTTP Basic: an access key and its secret, else a user name (or e-mail) and password.

        ``auth.login`` from the ClearML web app sends the second; API clients the first. One bcrypt
        check either way, so the answer's timing tells nothing about which names exist.
        """
        if Credentials.objects(access_key=name, revoked=None).only("id").first() is not None:
            return self.authenticate_key(name, secret, address)
        return self.authenticate_password(name, secret, address)

    def authenticate_password(self, login: str, password: str, address: str | None = None) -> Identity:
        """Identity of a user name (or e-mail) and password, or 401/22; throttled like keys."""
        self.throttle.check(login, address)
        user = User.objects(email=login).first() or User.objects(username=login).first()
        if user is not None and user.password_hash:
            ok = self._checker.check(password, user.password_hash)
        else:
            ok = self._checker.check_unknown(password)
        if not ok:
            self.throttle.failed(login, address)
            raise errors.unauthorized.InvalidCredentials()
        return self.identity_of(user)

    def sign_in(self, data: dict[str, Any], address: str | None = None) -> Identity:
        """``auth.obtain_token``'s caller: the complete credential pair decides (a key pair, else a user
        name or e-mail and password; a stray half of the other pair is never read), and a workspace,
        when named (by id or name), must be the user's own, else 401/22."""
        if data.get("access_key") and data.get("secret_key"):
            identity = self.authenticate_key(data["access_key"], data["secret_key"], address)
        else:
            identity = self.authenticate_password(data.get("email") or data.get("username") or "",
                                                  data.get("password") or "", address)
        workspace = data.get("workspace")
        if workspace and workspace not in (identity.company, identity.company_name):
            raise errors.unauthorized.InvalidCredentials("the user is not a member of this workspace")
        return identity

    # -- bootstrap ----------------------------------------------------------------------------

    def token_secret(self, configured: str) -> str:
        """The configured secret, else the deployment's generated one (created once, shared)."""
        return configured_or_generated("token_secret", configured, lambda: secrets.token_urlsafe(48))

    def bootstrap(self, settings: AuthSettings, env: dict[str, str] | None = None) -> None:
        """Create the default company, the configured users and, on a bare install, one admin."""
        env = os.environ if env is None else env
        default = settings.default_company
        company = self.ensure_company(default.get("id"), default.get("name", "default"))
        fixed = settings.fixed_users or []
        if not isinstance(fixed, list) or not all(isinstance(e, dict) for e in fixed):
            raise ValueError("auth.fixed_users must be a list of objects {username, role, access_key, ...}")
        for entry in fixed:
            self._ensure_fixed_user(entry, company)
        admin_key, admin_secret = env.get(ADMIN_KEY_ENV), env.get(ADMIN_SECRET_ENV)
        if admin_key and admin_secret:
            self._ensure_fixed_user({"username": "admin", "name": "admin", "role": "admin",
                                     "access_key": admin_key, "secret_key": admin_secret}, company)
        elif User.objects(role__in=["admin", "root", "system"]).count() == 0:
            self._generate_admin(company, settings.generated_credentials_file or None)

    def _ensure_fixed_user(self, entry: dict[str, Any], default_company: Company) -> None:
        username = entry.get("username") or entry.get("name")
        if not username:
            raise ValueError("every auth.fixed_users entry needs a username")
        company = default_company
        if entry.get("company") and entry["company"] not in (default_company.id, default_company.name):
            company = Company.objects(name=entry["company"]).first() or \
                self.ensure_company(entry.get("company_id") or secrets.token_hex(16), entry["company"])
        user = User.objects(username=username).first()
        if user is None:
            try:
                user = self.create_user(company.id, entry.get("name", username), entry.get("role", "user"),
                                        email=entry.get("email"), username=username,
                                        password=entry.get("password"), user_id=entry.get("id"))
            except errors.bad_request.UserIdExists:
                user = User.objects(username=username).first()  # another process created it just now
                if user is None:
                    raise
        else:
            changes: dict[str, Any] = {}
            if entry.get("role", user.role) != user.role:
                changes["set__role"] = entry["role"]
            if entry.get("password") and not (user.password_hash and
                                              self._checker.check(entry["password"], user.password_hash)):
                changes["set__password_hash"] = hash_secret(entry["password"], self.bcrypt_rounds)
            if changes:
                user.update(inc__token_version=1, **changes)
        key, secret = entry.get("access_key"), entry.get("secret_key")
        if key and secret:
            existing = Credentials.objects(access_key=key).first()
            if existing is None:
                try:
                    self.create_credentials(user.id, user.company, label="fixed", access_key=key, secret_key=secret)
                    return
                except errors.bad_request.ExpectedUniqueData:
                    existing = Credentials.objects(access_key=key).first()  # created concurrently
            if existing.user != user.id:
                raise ValueError(f"fixed user {username}: access key {key} belongs to another user")
            if existing.revoked or not self._checker.check(secret, existing.secret_hash):
                existing.update(set__secret_hash=hash_secret(secret, self.bcrypt_rounds), unset__revoked=True)
                User.objects(id=user.id).update(inc__token_version=1)  # re-keyed: the old key's tokens end

    def _generate_admin(self, company: Company, path: str | None) -> None:
        password = secrets.token_urlsafe(18)  # the web app's login page takes a user name and password
        try:
            user = self.create_user(company.id, "admin", "admin", username="admin", password=password)
        except errors.bad_request.UserIdExists:
            return  # another process bootstrapped at the same moment
        creds = self.create_credentials(user.id, company.id, label="generated admin")
        text = json.dumps({"access_key": creds.access_key, "secret_key": creds.secret_key,
                           "username": "admin", "password": password}, indent=2)
        if path:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text + "\n")
        log.warning("No admin was configured: created user 'admin' with access key %s and secret key %s, "
                    "and password %s for the web app's login page (also written to %s). Store them now; "
                    "this is the only time they are shown.", creds.access_key, creds.secret_key, password,
                    path or "nowhere")
