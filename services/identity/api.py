"""Identity's HTTP API: the OAuth2 token endpoint, people's sign-in, JWKS and discovery (public), and the
administration of clients, people, signing keys and the audit trail (role `admin`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from shared import clock
from shared.audit import Actor
from shared.auth import Principal, public, require
from shared.http import problem_response, problem_responses
from shared.roles import Role
from shared.service import Runtime, Sessions

from . import handlers
from .domain import Client, Person, TokenError, client_credentials, token_request

router = APIRouter()
admin = APIRouter(tags=["administration"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1: tokens must not be cached


def _actor(principal: Principal) -> Actor:
    return Actor(str(principal.claims.get("preferred_username") or principal.subject), Role.ADMIN.value)


def _keyring(runtime: Runtime) -> handlers.Keyring:
    return runtime.state["keyring"]  # type: ignore[no-any-return]


# --- tokens -----------------------------------------------------------------------------------------


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = Field(examples=["Bearer"])
    expires_in: int = Field(description="Seconds until the token expires", examples=[600])


class TokenErrorResponse(BaseModel):
    error: str = Field(examples=["invalid_client"])
    error_description: str | None = None


TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string", "description": "client_secret_post only"},
                        "client_secret": {"type": "string", "description": "client_secret_post only"},
                    },
                }
            }
        },
    }
}


def _token_error(error: TokenError, basic: bool) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        # RFC 6749 §5.2: a failed client authentication answers 401 with the scheme the client may use.
        headers["WWW-Authenticate"] = 'Basic realm="ceper", charset="UTF-8"' if basic else 'Basic realm="ceper"'
    return JSONResponse(handlers.token_problem(error), status_code=error.status, headers=headers)


@router.post(
    "/oauth/token",
    tags=["oauth"],
    summary="Token endpoint: client credentials grant (client_secret_basic or client_secret_post)",
    response_model=TokenResponse,
    dependencies=[Depends(public())],
    openapi_extra=TOKEN_FORM,
    responses={
        400: {
            "model": TokenErrorResponse,
            "description": "invalid_request, unsupported_grant_type or invalid_scope (RFC 6749 §5.2)",
        },
        401: {"model": TokenErrorResponse, "description": "invalid_client: unknown client, wrong secret or revoked client"},
        **problem_responses(),
    },
)
async def token(request: Request, sessions: Sessions, runtime: Runtime) -> JSONResponse:
    authorization = request.headers.get("authorization")
    try:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise TokenError("invalid_request", "send the parameters as application/x-www-form-urlencoded")
        try:
            form = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise TokenError("invalid_request", "the body is not UTF-8") from None
        params = token_request(form)
        presented = client_credentials(authorization, params)
        issued = await handlers.issue_client_token(sessions, _keyring(runtime), presented.client_id, presented.secret)
    except TokenError as error:
        return _token_error(error, basic=bool(authorization))
    body = TokenResponse(access_token=issued.token, token_type="Bearer", expires_in=issued.expires_in)
    return JSONResponse(body.model_dump(), headers=NO_STORE)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200, examples=["planner"])
    password: str = Field(min_length=1, max_length=1024)


class Session(TokenResponse):
    username: str
    roles: list[str]
    buyer_code: str | None = None
    foundry_code: str | None = None
    refresh_token: str = Field(description="Renews the access token once (`POST /v1/sessions/renew`); keep it secret")
    refresh_expires_in: int = Field(description="Seconds until the sign-in ends, however often it is renewed")


class RefreshTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=200)


def _session_answer(issued: handlers.SignedIn) -> JSONResponse:
    claims = issued.access.claims
    answer = Session(
        access_token=issued.access.token,
        token_type="Bearer",
        expires_in=issued.access.expires_in,
        username=claims["preferred_username"],
        roles=claims["roles"],
        buyer_code=claims.get("buyer_code"),
        foundry_code=claims.get("foundry_code"),
        refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in(clock.now()),
    )
    return JSONResponse(answer.model_dump(), headers=NO_STORE)


@router.post(
    "/v1/sessions",
    tags=["people"],
    summary="A person signs in with name and password and gets an access token (used by the console)",
    response_model=Session,
    dependencies=[Depends(public())],
    responses={
        **problem_responses(401, 422, 429),
    },
)
async def sign_in(body: SignIn, request: Request, sessions: Sessions, runtime: Runtime) -> JSONResponse:
    address = request.client.host if request.client else "unknown"
    try:
        issued = await handlers.sign_in(
            sessions, _keyring(runtime), runtime.state["throttle"], body.username, body.password, address
        )
    except (handlers.SignInLocked, handlers.SignInRefused) as refused:
        headers = {"WWW-Authenticate": 'Bearer realm="ceper"', **NO_STORE}
        if isinstance(refused, handlers.SignInLocked):
            headers["Retry-After"] = str(refused.retry_after_s)
        return problem_response(request, refused.status, refused.title, refused.detail, refused.type_slug, headers=headers)
    return _session_answer(issued)


@router.post(
    "/v1/sessions/renew",
    tags=["people"],
    summary="Renew a person's sign-in: a new access token and a new refresh token for the current refresh token",
    description="The refresh token presented is spent (rotated on use); a spent token presented again later ends the"
    " sign-in. A sign-in is renewed until it is ended or reaches `CEPER_IDENTITY_SESSION_HOURS`.",
    response_model=Session,
    dependencies=[Depends(public())],
    responses=problem_responses(401, 422),
)
async def renew_session(body: RefreshTokenIn, request: Request, sessions: Sessions, runtime: Runtime) -> JSONResponse:
    try:
        issued = await handlers.renew(sessions, _keyring(runtime), body.refresh_token)
    except handlers.RenewalRefused as refused:
        headers = {"WWW-Authenticate": 'Bearer realm="ceper"', **NO_STORE}
        return problem_response(request, refused.status, refused.title, refused.detail, refused.type_slug, headers=headers)
    return _session_answer(issued)


@router.post(
    "/v1/sessions/end",
    tags=["people"],
    summary="Sign out: the sign-in of this refresh token can no longer be renewed",
    status_code=204,
    dependencies=[Depends(public())],
    responses=problem_responses(422),
)
async def end_session(body: RefreshTokenIn, sessions: Sessions) -> Response:
    await handlers.sign_out(sessions, body.refresh_token)
    return Response(status_code=204)


# --- keys and discovery -----------------------------------------------------------------------------


@router.get(
    "/.well-known/jwks.json",
    tags=["oauth"],
    summary="The public keys that verify access tokens (JWKS), with their key ids",
    dependencies=[Depends(public())],
    responses=problem_responses(),
)
async def jwks(sessions: Sessions, runtime: Runtime) -> JSONResponse:
    document = await handlers.jwks(sessions, runtime.settings)
    # Short caching: after a rotation verifiers also refresh on the unknown key id.
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=60"})


def _metadata(runtime: Runtime) -> dict[str, Any]:
    issuer = runtime.settings.identity_issuer_url()
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "roles", "buyer_code", "foundry_code", "client_id"],
        "service_documentation": f"{issuer}/docs",
    }


@router.get(
    "/.well-known/openid-configuration",
    tags=["oauth"],
    summary="Discovery: issuer, token endpoint, JWKS and what they support",
    dependencies=[Depends(public())],
    responses=problem_responses(),
)
async def openid_configuration(runtime: Runtime) -> dict[str, Any]:
    return _metadata(runtime)


@router.get(
    "/.well-known/oauth-authorization-server",
    tags=["oauth"],
    summary="Discovery as RFC 8414 names it (the same document)",
    dependencies=[Depends(public())],
    responses=problem_responses(),
)
async def authorization_server_metadata(runtime: Runtime) -> dict[str, Any]:
    return _metadata(runtime)


# --- administration: clients ------------------------------------------------------------------------


class ClientView(BaseModel):
    client_id: str
    name: str
    role: str
    tenant: str | None
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    previous_secret_until: datetime | None

    @classmethod
    def of(cls, client: Client) -> ClientView:
        return cls.model_validate(client.public())


class ClientWithSecret(ClientView):
    client_secret: str = Field(description="Shown once: store it now, it cannot be read back")


class NewClient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63, examples=["kai-procurement"])
    role: Role = Field(examples=[Role.BUYER])
    tenant: str | None = Field(default=None, max_length=20, examples=["KAI"], description="Buyer code or foundry code")


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_minutes: int = Field(default=0, ge=0, le=7 * 24 * 60, description="How long the previous secret keeps working")


@admin.get(
    "/v1/clients",
    summary="Machine clients (never their secrets)",
    response_model=list[ClientView],
    responses=problem_responses(401, 403),
)
async def clients(sessions: Sessions, _caller: Admin) -> list[ClientView]:
    return [ClientView.of(c) for c in await handlers.list_clients(sessions)]


@admin.post(
    "/v1/clients",
    status_code=201,
    summary="Add a machine client; its secret is in this answer only",
    response_model=ClientWithSecret,
    responses=problem_responses(401, 403, 409, 422),
)
async def add_client(body: NewClient, sessions: Sessions, caller: Admin) -> JSONResponse:
    issued = await handlers.add_client(sessions, _actor(caller), body.name, body.role.value, body.tenant)
    answer = ClientWithSecret(**ClientView.of(issued.client).model_dump(), client_secret=issued.secret)
    return JSONResponse(answer.model_dump(mode="json"), status_code=201, headers=NO_STORE)


@admin.post(
    "/v1/clients/{client_id}/secret",
    summary="Rotate a client's secret; the new one is in this answer only",
    response_model=ClientWithSecret,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def rotate_secret(client_id: str, body: Rotation, sessions: Sessions, caller: Admin) -> JSONResponse:
    issued = await handlers.rotate_client_secret(sessions, _actor(caller), client_id, timedelta(minutes=body.grace_minutes))
    answer = ClientWithSecret(**ClientView.of(issued.client).model_dump(), client_secret=issued.secret)
    return JSONResponse(answer.model_dump(mode="json"), headers=NO_STORE)


@admin.post(
    "/v1/clients/{client_id}/revoke",
    summary="Revoke a client: it gets no new tokens (those issued expire within minutes)",
    response_model=ClientView,
    responses=problem_responses(401, 403, 404, 409),
)
async def revoke_client(client_id: str, sessions: Sessions, caller: Admin) -> ClientView:
    return ClientView.of(await handlers.revoke(sessions, _actor(caller), client_id))


# --- administration: people -------------------------------------------------------------------------


class PersonView(BaseModel):
    person_id: str
    username: str
    role: str
    tenant: str | None
    created_at: datetime
    password_changed_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, person: Person) -> PersonView:
        return cls.model_validate(person.public())


class NewPerson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=63, examples=["siti.planner"])
    role: Role
    tenant: str | None = Field(default=None, max_length=20)
    password: str = Field(min_length=1, max_length=1024)


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=1024)


@admin.get(
    "/v1/people",
    summary="People who sign in to the console",
    response_model=list[PersonView],
    responses=problem_responses(401, 403),
)
async def people(sessions: Sessions, _caller: Admin) -> list[PersonView]:
    return [PersonView.of(p) for p in await handlers.list_people(sessions)]


@admin.post(
    "/v1/people",
    status_code=201,
    summary="Add a person",
    response_model=PersonView,
    responses=problem_responses(401, 403, 409, 422),
)
async def add_person(body: NewPerson, sessions: Sessions, caller: Admin) -> PersonView:
    person = await handlers.add_person(sessions, _actor(caller), body.username, body.role.value, body.tenant, body.password)
    return PersonView.of(person)


@admin.post(
    "/v1/people/{username}/disable",
    summary="Disable a person: no more sign-ins",
    response_model=PersonView,
    responses=problem_responses(401, 403, 404, 409),
)
async def disable_person(username: str, sessions: Sessions, caller: Admin) -> PersonView:
    return PersonView.of(await handlers.disable(sessions, _actor(caller), username))


@admin.put(
    "/v1/people/{username}/password",
    summary="Set a person's password",
    response_model=PersonView,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def reset_password(username: str, body: NewPassword, sessions: Sessions, caller: Admin) -> PersonView:
    return PersonView.of(await handlers.reset_password(sessions, _actor(caller), username, body.password))


# --- administration: signing keys and audit ---------------------------------------------------------


class SigningKeyView(BaseModel):
    kid: str
    created_at: datetime
    retired_at: datetime | None
    from_file: bool


class RotatedKey(BaseModel):
    kid: str = Field(description="The key that signs from now on")
    retired: list[str] = Field(description="Keys that stop signing; they stay in the JWKS until their tokens expire")


@admin.get(
    "/v1/signing-keys",
    summary="The published signing keys (public information only)",
    response_model=list[SigningKeyView],
    responses=problem_responses(401, 403),
)
async def signing_keys(sessions: Sessions, runtime: Runtime, _caller: Admin) -> list[SigningKeyView]:
    keys = await handlers.published_signing_keys(sessions, runtime.settings)
    return [SigningKeyView(kid=k.kid, created_at=k.created_at, retired_at=k.retired_at, from_file=k.from_file) for k in keys]


@admin.post(
    "/v1/signing-keys/rotate",
    summary="A new key signs from now on; the old one stays published until its tokens expire",
    response_model=RotatedKey,
    responses=problem_responses(401, 403, 409),
)
async def rotate_signing_key(sessions: Sessions, runtime: Runtime, caller: Admin) -> RotatedKey:
    kid, retired = await handlers.rotate_signing_key(sessions, _keyring(runtime), _actor(caller))
    return RotatedKey(kid=kid, retired=retired)


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor_subject: str
    actor_role: str | None
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None


@admin.get(
    "/v1/audit",
    summary="Who changed which client, person or key, when, from what to what (newest first)",
    response_model=list[AuditEntry],
    responses=problem_responses(401, 403, 422),
)
async def audit_trail(
    sessions: Sessions,
    _caller: Admin,
    entity: Annotated[str | None, Query(max_length=80, description="client, person or signing_key")] = None,
    entity_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntry]:
    return [AuditEntry.model_validate(e) for e in await handlers.audit_entries(sessions, entity, entity_id, limit)]
