"""Who is calling: bearer tokens verified against the issuer's JWKS, mapped to a `Principal`, and route rules.

Every service verifies tokens itself: the signature with a key from the issuer's JWKS (cached, refreshed
when a token names an unknown `kid`, never more often than a minimum interval), then issuer, audience,
expiry, not-before and the algorithm against an allow-list. Which claims hold the roles and the tenant is
configuration (`CEPER_AUTH_*_CLAIM`), so an external identity provider such as Keycloak takes over by
settings alone.

A route declares its rule as a dependency:

    @router.get("/v1/orders/{order_id}")
    async def get_order(..., caller: Principal = Depends(require(Role.PLANNER, Role.BUYER))): ...

No token or an invalid one answers 401, a role the rule does not name answers 403, both as
`application/problem+json` with `WWW-Authenticate: Bearer …` (RFC 6750).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.base import SecurityBase
from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from starlette.exceptions import HTTPException

from .audit import Actor, current_actor
from .logging import get_logger
from .roles import TENANT_OF, Role, Tenant
from .settings import REFUSED_ALGORITHMS, Settings, get_settings

log = get_logger(__name__)

VerifyingKey = ECKey | RSAKey | OKPKey
REALM = "ceper"


# --- the caller -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """The verified caller: its subject, its roles, and the buyer or foundry its tenant roles act for."""

    subject: str
    roles: frozenset[Role]
    buyer_code: str | None = None
    foundry_code: str | None = None
    client_id: str | None = None  # set for machine clients (`client_id`, or Keycloak's `azp`)
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def has_any(self, roles: Iterable[Role | str]) -> bool:
        return any(Role(role) in self.roles for role in roles)

    def acts_for_buyer(self, buyer_code: str) -> bool:
        """May this caller see the buyer's orders? Staff may; a buyer only its own."""
        return self.has_any((Role.ADMIN, Role.PLANNER, Role.QA_OFFICER)) or (
            Role.BUYER in self.roles and self.buyer_code == buyer_code
        )

    def acts_for_foundry(self, foundry_code: str) -> bool:
        """May this caller act for the member foundry? Staff may; a foundry only for itself."""
        return self.has_any((Role.ADMIN, Role.PLANNER, Role.QA_OFFICER)) or (
            Role.FOUNDRY in self.roles and self.foundry_code == foundry_code
        )


@dataclass(frozen=True)
class ClaimMapping:
    """Where the principal's parts are in the claims: dotted paths into nested objects."""

    subject: str = "sub"
    roles: str = "roles"
    buyer_code: str = "buyer_code"
    foundry_code: str = "foundry_code"

    @classmethod
    def from_settings(cls, settings: Settings) -> ClaimMapping:
        return cls(settings.auth_subject_claim, settings.auth_roles_claim, settings.auth_buyer_claim, settings.auth_foundry_claim)

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        """The principal the claims describe. Unknown roles are ignored (Keycloak adds its own, such as
        `offline_access`); a tenant role whose tenant is missing is not granted."""
        subject = claim_at(claims, self.subject)
        if not isinstance(subject, str) or not subject:
            raise InvalidToken(f"the token has no subject at {self.subject!r}")
        raw_roles = claim_at(claims, self.roles)
        if isinstance(raw_roles, str):
            raw_roles = raw_roles.split()
        if not isinstance(raw_roles, list):
            raw_roles = []
        tenants = {
            Tenant.BUYER: _text(claim_at(claims, self.buyer_code)),
            Tenant.FOUNDRY: _text(claim_at(claims, self.foundry_code)),
        }
        roles = set()
        for value in raw_roles:
            try:
                role = Role(value)
            except ValueError:
                continue
            tenant = TENANT_OF.get(role)
            if tenant is not None and not tenants[tenant]:
                log.warning("tenant role without its tenant ignored", role=role.value, subject=subject)
                continue
            roles.add(role)
        client_id = _text(claims.get("client_id")) or _text(claims.get("azp"))
        return Principal(
            subject=subject,
            roles=frozenset(roles),
            buyer_code=tenants[Tenant.BUYER] if Role.BUYER in roles else None,
            foundry_code=tenants[Tenant.FOUNDRY] if Role.FOUNDRY in roles else None,
            client_id=client_id,
            claims=dict(claims),
        )


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`realm_access.roles`), or None. A claim whose own name has a dot wins."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --- errors -----------------------------------------------------------------------------------------


class AuthFailure(Exception):
    """The request cannot be authorised; `status` and `challenge` say how to answer."""

    status = 401
    error = "invalid_token"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def challenge(self) -> str:
        # Quotes and backslashes would break the header's quoted-string.
        description = self.description.replace("\\", "").replace('"', "'")
        return f'Bearer realm="{REALM}", error="{self.error}", error_description="{description}"'

    def http(self) -> HTTPException:
        return HTTPException(self.status, self.description, headers={"WWW-Authenticate": self.challenge()})


class MissingToken(AuthFailure):
    def challenge(self) -> str:
        return f'Bearer realm="{REALM}"'  # RFC 6750 §3.1: no error code when no credentials were sent


class InvalidToken(AuthFailure):
    pass


class Forbidden(AuthFailure):
    status = 403
    error = "insufficient_scope"


class KeysUnavailable(Exception):
    """The issuer's JWKS cannot be fetched and no copy is cached: tokens cannot be checked right now."""


# --- keys -------------------------------------------------------------------------------------------


class KeySource(Protocol):
    async def key(self, kid: str) -> VerifyingKey | None:
        """The verification key named `kid`, or None when the issuer has no such key."""


def import_jwks(document: Mapping[str, Any]) -> dict[str, VerifyingKey]:
    """The signature keys of a JWKS by `kid`; keys for encryption, without `kid` or of unknown types are skipped."""
    keys: dict[str, VerifyingKey] = {}
    for entry in document.get("keys", []) if isinstance(document, Mapping) else []:
        if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig" or not isinstance(entry.get("kid"), str):
            continue
        try:
            key = KeySet.import_key_set({"keys": [dict(entry)]}).keys[0]
        except (JoseError, ValueError, TypeError, KeyError):
            continue
        if isinstance(key, ECKey | RSAKey | OKPKey) and not key.is_private:
            keys[entry["kid"]] = key
    return keys


class StaticKeys:
    """A fixed key set (tests, or a JWKS file shipped with the deployment)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = import_jwks(jwks)

    async def key(self, kid: str) -> VerifyingKey | None:
        return self._keys.get(kid)


class JwksKeys:
    """The issuer's JWKS fetched over HTTP: cached for `cache_s`, refreshed early when a token names an unknown
    `kid` (a rotation), but at most once per `min_refresh_s`, so a flood of made-up kids cannot hammer the
    issuer. If a refresh fails, the keys fetched before stay in use."""

    def __init__(
        self,
        url: str,
        *,
        cache_s: float = 300.0,
        min_refresh_s: float = 10.0,
        timeout_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        fetch: Callable[[str], Awaitable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.url = url
        self.cache_s = cache_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self._monotonic = monotonic
        self._fetch = fetch or self._fetch_over_http
        self._keys: dict[str, VerifyingKey] | None = None
        self._fetched_at = float("-inf")  # when the last fetch was tried, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> VerifyingKey | None:
        if self._keys is None or self._monotonic() - self._fetched_at >= self.cache_s:
            await self._refresh(min_age=0.0 if self._keys is None else self.cache_s)
        assert self._keys is not None
        if kid not in self._keys:
            await self._refresh(min_age=self.min_refresh_s)
        return self._keys.get(kid)

    async def _refresh(self, min_age: float) -> None:
        attempted = self._fetched_at
        async with self._lock:
            if self._fetched_at != attempted:
                return  # another request refreshed while this one waited
            if self._keys is not None and self._monotonic() - self._fetched_at < min_age:
                return
            self._fetched_at = self._monotonic()
            self.fetches += 1
            try:
                self._keys = import_jwks(await self._fetch(self.url))
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("JWKS not fetched", url=self.url, error=str(exc)[:200], cached_keys=len(self._keys or {}))
                if self._keys is None:
                    raise KeysUnavailable(f"the issuer's keys cannot be fetched from {self.url}") from None

    async def _fetch_over_http(self, url: str) -> Mapping[str, Any]:
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            response = await client.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        if not isinstance(document, Mapping):
            raise ValueError("the JWKS is not a JSON object")
        return document


# --- verification -----------------------------------------------------------------------------------


VERIFIED_TOKENS_KEPT = 2048


class TokenVerifier:
    """Checks a bearer token and returns the principal it names, or raises `InvalidToken`."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Iterable[str] = ("ES256", "RS256"),
        leeway_s: int = 30,
        mapping: ClaimMapping | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = [a for a in algorithms if a not in REFUSED_ALGORITHMS and not a.startswith("HS")]
        self.leeway_s = leeway_s
        self.mapping = mapping or ClaimMapping()
        self._now = now
        # Tokens whose signature verified, with the key that verified it: a client sends one token with many
        # requests, and checking its signature again cost a tenth of a short read. The claims are checked each time.
        self._verified: OrderedDict[str, tuple[VerifyingKey, dict[str, Any]]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, keys: KeySource | None = None) -> TokenVerifier:
        return cls(
            keys
            or JwksKeys(settings.auth_jwks(), cache_s=settings.auth_jwks_cache_s, min_refresh_s=settings.auth_jwks_min_refresh_s),
            issuer=settings.auth_issuer_url(),
            audience=settings.auth_audience,
            algorithms=settings.auth_algorithms,
            leeway_s=settings.auth_leeway_s,
            mapping=ClaimMapping.from_settings(settings),
        )

    async def verify(self, token: str) -> Principal:
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError, json.JSONDecodeError):
            raise InvalidToken("the token is not a signed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise InvalidToken(f"tokens signed with {algorithm!r} are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token names no signing key (kid)")
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidToken("the token is signed with a key the issuer does not publish")
        verified = self._verified.get(token)
        if verified is not None and verified[0] is key:  # the same key still published under its kid
            self._verified.move_to_end(token)
            claims = verified[1]
        else:
            try:
                claims = jwt.decode(token, key, algorithms=[algorithm]).claims
            except (JoseError, ValueError):
                raise InvalidToken("the token's signature does not verify") from None
            self._verified[token] = (key, claims)
            if len(self._verified) > VERIFIED_TOKENS_KEPT:
                self._verified.popitem(last=False)
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._now()),
            leeway=self.leeway_s,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidToken(_claim_problem(exc)) from None
        return self.mapping.principal(claims)


_CLAIM_PROBLEMS = {
    "iss": "the token is from another issuer",
    "aud": "the token is for another audience",
    "nbf": "the token is not valid yet",
    "iat": "the token was issued in the future",
}


def _claim_problem(exc: JoseError) -> str:
    if isinstance(exc, ExpiredTokenError):
        return "the token has expired"
    if isinstance(exc, MissingClaimError):
        return f"the token lacks the claims {exc.claim}"
    if isinstance(exc, ClaimError) and exc.claim in _CLAIM_PROBLEMS:
        return _CLAIM_PROBLEMS[exc.claim]
    return f"the token's claims are not accepted: {exc.description or exc.error}"


# --- FastAPI: route rules ---------------------------------------------------------------------------


class _ClientCredentials(SecurityBase):
    """OpenAPI's OAuth2 client credentials scheme; its token URL is read from the settings when /docs asks."""

    scheme_name = "oauth2"

    def __init__(self) -> None:
        self.scheme_name = "oauth2"
        self.auto_error = False

    @property
    def model(self) -> OAuth2Model:  # type: ignore[override]  # computed, so the token URL follows the settings
        flow = OAuthFlowClientCredentials(tokenUrl=get_settings().auth_token_endpoint())
        return OAuth2Model(flows=OAuthFlows(clientCredentials=flow), description="OAuth2 client credentials (machine clients)")

    async def __call__(self, request: Request) -> None:
        return None  # documentation only: the bearer scheme reads the token


BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", bearerFormat="JWT", description="A JWT access token")
CLIENT_CREDENTIALS = _ClientCredentials()


@dataclass(frozen=True)
class RouteRule:
    """Who may call a route: anyone (`public`), or a caller holding one of `roles`."""

    roles: frozenset[Role]
    public: bool = False

    def allows(self, principal: Principal | None) -> bool:
        if self.public:
            return True
        return principal is not None and principal.has_any(self.roles)


def verifier_of(app: FastAPI) -> TokenVerifier:
    """The app's verifier: installed with `install_verifier`, else made once from the service's settings."""
    verifier = getattr(app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        runtime = getattr(app.state, "runtime", None)
        settings = runtime.settings if runtime is not None else get_settings()
        verifier = TokenVerifier.from_settings(settings)
        app.state.token_verifier = verifier
    return verifier


def install_verifier(app: FastAPI, verifier: TokenVerifier) -> None:
    app.state.token_verifier = verifier


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise MissingToken("a bearer token is required").http()
    try:
        return await verifier_of(request.app).verify(credentials.credentials)
    except AuthFailure as failure:
        raise failure.http() from None
    except KeysUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None


def require(*roles: Role | str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting callers that hold any of `roles`; it returns the verified `Principal`."""
    if not roles:
        raise ValueError("require() needs at least one role; use public() for routes anyone may call")
    rule = RouteRule(frozenset(Role(role) for role in roles))

    async def caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        _documented: Annotated[None, Depends(CLIENT_CREDENTIALS)],
    ) -> Principal:
        principal = await authenticate(request, credentials)
        if not rule.allows(principal):
            raise Forbidden(f"this needs the role {' or '.join(sorted(r.value for r in rule.roles))}").http()
        request.state.principal = principal
        current_actor.set(Actor(principal.subject, _acting_role(principal, rule)))  # the request's own context
        return principal

    caller.rule = rule  # type: ignore[attr-defined]  # read by rule_of() and the route × role test
    return caller


def _acting_role(principal: Principal, rule: RouteRule) -> str:
    """The role the caller acts in: the first, in the order roles are declared, that the rule admits."""
    return next(role.value for role in Role if role in principal.roles and role in rule.roles)


def public() -> Callable[[], Awaitable[None]]:
    """A dependency that declares a route open to anyone (discovery, the token endpoint, health)."""

    async def anyone() -> None:
        return None

    anyone.rule = RouteRule(frozenset(), public=True)  # type: ignore[attr-defined]
    return anyone


def rule_of(route: Any) -> RouteRule | None:
    """The rule a route declares through `require()` or `public()`, or None when it declares none."""
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        rule = getattr(dependant.call, "rule", None)
        if isinstance(rule, RouteRule):
            return rule
        pending.extend(dependant.dependencies)
    return None
