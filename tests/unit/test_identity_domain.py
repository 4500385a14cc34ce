"""Identity's rules: roles and tenants, clients and their secrets, people and passwords, what a token says,
which signing keys are published, and how the token endpoint reads a request (RFC 6749)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from services.identity.domain import (
    Client,
    Rejected,
    SigningKey,
    StateConflict,
    TokenError,
    access_claims,
    change_password,
    check_new_person,
    client_credentials,
    disable_person,
    end_session,
    new_client,
    new_person,
    published_keys,
    retire,
    revoke_client,
    rotate_refresh,
    rotate_secret,
    start_session,
    token_request,
)
from shared.roles import Role, tenant_problem

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


# --- roles and tenants ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "tenant", "problem"),
    [
        ("buyer", "KAI", None),
        ("buyer", "INKA", None),
        ("foundry", "IKM-001", None),
        ("admin", None, None),
        ("lab", None, None),
        ("buyer", None, "needs a tenant"),
        ("buyer", "kai", "must be a buyer code"),
        ("buyer", "IKM-001", "must be a buyer code"),
        ("foundry", "KAI", "must be a member code"),
        ("foundry", None, "needs a tenant"),
        ("planner", "KAI", "takes no tenant"),
        ("qa_officer", "IKM-001", "takes no tenant"),
        ("superuser", None, "unknown role"),
    ],
)
def test_a_role_is_granted_only_with_the_tenant_it_is_bound_to(role: str, tenant: str | None, problem: str | None):
    found = tenant_problem(role, tenant)
    assert (found is None) if problem is None else (found is not None and problem in found)


# --- clients ----------------------------------------------------------------------------------------


def kai() -> Client:
    return new_client("kai-procurement-1a2b", "kai-procurement", "buyer", "KAI", "hash-1", NOW)


def test_a_new_client_checks_its_name_and_role():
    with pytest.raises(Rejected) as rejected:
        new_client("x", "KAI Procurement!", "buyer", None, "h", NOW)
    assert {v.field for v in rejected.value.violations} == {"name", "tenant"}
    with pytest.raises(Rejected) as rejected:
        new_client("x", "kai", "root", None, "h", NOW)
    assert [v.field for v in rejected.value.violations] == ["role"]


def test_a_rotated_secret_replaces_the_old_one_at_once_without_grace():
    rotated = rotate_secret(kai(), "hash-2", NOW)
    assert rotated.secret_hashes(NOW) == ["hash-2"] and rotated.rotated_at == NOW


def test_with_a_grace_period_the_previous_secret_works_until_it_ends():
    rotated = rotate_secret(kai(), "hash-2", NOW, grace=timedelta(hours=1))
    assert rotated.secret_hashes(NOW + timedelta(minutes=59)) == ["hash-2", "hash-1"]
    assert rotated.secret_hashes(NOW + timedelta(hours=1)) == ["hash-2"]


def test_a_revoked_client_cannot_be_rotated_or_revoked_again():
    revoked = revoke_client(rotate_secret(kai(), "hash-2", NOW, grace=timedelta(hours=1)), NOW)
    assert not revoked.active and revoked.previous_secret_hash is None
    with pytest.raises(StateConflict):
        revoke_client(revoked, NOW)
    with pytest.raises(StateConflict):
        rotate_secret(revoked, "hash-3", NOW)


def test_grace_is_bounded():
    with pytest.raises(Rejected):
        rotate_secret(kai(), "h", NOW, grace=timedelta(days=8))


def test_public_views_never_carry_secrets_or_hashes():
    client = rotate_secret(kai(), "hash-2", NOW, grace=timedelta(hours=1))
    person = new_person("p_1", "siti", "planner", None, "argon-hash", NOW)
    for view in (client.public(), person.public()):
        assert not any("hash" in str(k) or "hash" in str(v) for k, v in view.items())


# --- people -----------------------------------------------------------------------------------------


def test_a_new_persons_password_is_long_and_not_the_name():
    assert [v.message for v in check_new_person("siti", "planner", None, "short")] == ["at least 12 characters"]
    assert [v.message for v in check_new_person("siti", "planner", None, "my-name-is-siti-ok")] == [
        "must not contain the username"
    ]
    assert check_new_person("siti", "planner", None, "a long pass phrase") == []
    assert {v.field for v in check_new_person("Siti", "foundry", None, "a long pass phrase")} == {"name", "tenant"}


def test_a_disabled_person_cannot_be_disabled_again_or_get_a_password():
    person = disable_person(new_person("p_1", "siti", "planner", None, "h", NOW), NOW)
    with pytest.raises(StateConflict):
        disable_person(person, NOW)
    with pytest.raises(StateConflict):
        change_password(person, "h2", NOW)


# --- sign-in sessions ------------------------------------------------------------------------------


def test_a_sign_in_rotates_its_refresh_token_and_keeps_its_absolute_end():
    started = start_session("s_1", "p_1", "hash-1", NOW, timedelta(hours=12))
    assert started.open_at(NOW + timedelta(hours=11, minutes=59)) and not started.open_at(NOW + timedelta(hours=12))
    later = NOW + timedelta(hours=3)
    rotated = rotate_refresh(started, "hash-2", later)
    assert (rotated.refresh_hash, rotated.previous_hash, rotated.rotated_at) == ("hash-2", "hash-1", later)
    assert rotated.ends_at == started.ends_at  # renewing never extends the sign-in
    with pytest.raises(StateConflict):
        rotate_refresh(started, "hash-3", NOW + timedelta(hours=12))


def test_a_spent_token_is_a_replay_only_after_the_grace_and_an_ended_sign_in_stays_ended():
    rotated = rotate_refresh(start_session("s_1", "p_1", "hash-1", NOW, timedelta(hours=12)), "hash-2", NOW)
    grace = timedelta(seconds=60)
    assert not rotated.replayed(NOW + timedelta(seconds=30), grace)  # two requests of one console racing
    assert rotated.replayed(NOW + timedelta(seconds=61), grace)
    ended = end_session(rotated, NOW + timedelta(minutes=5))
    assert not ended.open_at(NOW + timedelta(minutes=6)) and end_session(ended, NOW + timedelta(hours=1)) == ended
    with pytest.raises(StateConflict):
        rotate_refresh(ended, "hash-3", NOW + timedelta(minutes=6))


# --- tokens -----------------------------------------------------------------------------------------


def test_a_buyers_token_carries_its_buyer_code_and_lives_for_the_ttl():
    claims = access_claims(
        issuer="http://id",
        audience="ceper-supply",
        subject="kai-1",
        role=Role.BUYER,
        tenant="KAI",
        now=NOW,
        ttl=timedelta(minutes=10),
        token_id="j1",
        client_id="kai-1",
    )
    assert claims == {
        "iss": "http://id",
        "sub": "kai-1",
        "aud": "ceper-supply",
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 600,
        "jti": "j1",
        "roles": ["buyer"],
        "buyer_code": "KAI",
        "client_id": "kai-1",
    }


def test_a_staff_token_carries_no_tenant():
    claims = access_claims(
        issuer="i",
        audience="a",
        subject="p_1",
        role=Role.PLANNER,
        tenant=None,
        now=NOW,
        ttl=timedelta(minutes=10),
        token_id="j",
        username="siti",
    )
    assert "buyer_code" not in claims and "foundry_code" not in claims and claims["preferred_username"] == "siti"


# --- signing keys -----------------------------------------------------------------------------------


def test_a_retired_key_stays_published_until_its_last_token_expired():
    active = SigningKey("new", {}, NOW)
    retired = SigningKey("old", {}, NOW - timedelta(days=1), retired_at=NOW)
    ttl, leeway = timedelta(minutes=10), timedelta(minutes=1)
    assert [k.kid for k in published_keys([active, retired], NOW + timedelta(minutes=10), ttl, leeway)] == ["new", "old"]
    assert [k.kid for k in published_keys([active, retired], NOW + timedelta(minutes=11), ttl, leeway)] == ["new"]


def test_one_key_signs_at_a_time():
    keys = [SigningKey("a", {}, NOW), SigningKey("b", {}, NOW), SigningKey("c", {}, NOW, retired_at=NOW)]
    assert [(k.kid, k.retired_at) for k in retire(keys, "b", NOW)] == [("a", NOW)]


# --- the token endpoint -----------------------------------------------------------------------------


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_client_secret_basic_is_read_from_the_header_and_url_decoded():
    presented = client_credentials(basic("kai%2B1", "s3cr%3At"), {"grant_type": "client_credentials"})
    assert (presented.client_id, presented.secret, presented.method) == ("kai+1", "s3cr:t", "client_secret_basic")


def test_client_secret_post_is_read_from_the_body():
    presented = client_credentials(None, {"client_id": "kai-1", "client_secret": "s"})
    assert (presented.client_id, presented.secret, presented.method) == ("kai-1", "s", "client_secret_post")


@pytest.mark.parametrize(
    ("authorization", "form", "error"),
    [
        (None, {}, "invalid_client"),
        (None, {"client_id": "kai-1"}, "invalid_client"),
        ("Bearer abc", {}, "invalid_client"),
        ("Basic not-base64!", {}, "invalid_client"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), {}, "invalid_client"),
        (basic("kai-1", "s"), {"client_secret": "s"}, "invalid_request"),
        (basic("kai-1", "s"), {"client_id": "inka-1"}, "invalid_request"),
    ],
    ids=["nothing", "no-secret", "bearer", "bad-base64", "no-colon", "two-methods", "two-ids"],
)
def test_bad_client_authentication_is_refused(authorization: str | None, form: dict[str, str], error: str):
    with pytest.raises(TokenError) as refused:
        client_credentials(authorization, form)
    assert refused.value.error == error
    assert refused.value.status == (401 if error == "invalid_client" else 400)


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ([], "invalid_request"),
        ([("grant_type", "password")], "unsupported_grant_type"),
        ([("grant_type", "authorization_code")], "unsupported_grant_type"),
        ([("grant_type", "client_credentials"), ("grant_type", "client_credentials")], "invalid_request"),
        ([("grant_type", "client_credentials"), ("scope", "orders:write")], "invalid_scope"),
    ],
)
def test_token_requests_follow_rfc_6749(form: list[tuple[str, str]], error: str):
    with pytest.raises(TokenError) as refused:
        token_request(form)
    assert refused.value.error == error and refused.value.status == 400


def test_a_client_credentials_request_is_accepted():
    assert token_request([("grant_type", "client_credentials"), ("scope", "")]) == {
        "grant_type": "client_credentials",
        "scope": "",
    }
