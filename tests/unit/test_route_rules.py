"""Every route of every service declares who may call it (`require(...)` or `public()`), so a route added
without a rule fails here; the route × role × tenant matrix (tests/integration/test_access_matrix.py) then
checks each rule against real callers."""

from __future__ import annotations

import importlib

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from shared.auth import RouteRule, rule_of
from shared.settings import Settings

SERVICES = ("orders", "capacity", "quality", "identity", "console")


def app_of(service: str) -> FastAPI:
    return importlib.import_module(f"services.{service}.app").create_app(Settings(env="test"))  # type: ignore[no-any-return]


def documentation_paths(app: FastAPI) -> set[str]:
    """The OpenAPI document, Swagger UI and ReDoc with their offline assets: FastAPI serves them to anyone."""
    paths = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return {path for path in paths if path} | {"/docs", "/redoc", "/static-offline-docs"}  # fastapi-offline's own


def routes_of(app: FastAPI) -> list[tuple[str, str, RouteRule | None]]:
    """(method, path, rule) of every API route the app serves; documentation routes and mounts excluded."""
    found = []
    docs = documentation_paths(app)
    for route in iter_route_contexts(app.routes):
        if route.path in docs or not hasattr(route, "dependant"):
            continue
        for method in sorted(route.methods or ()):
            found.append((method, route.path, rule_of(route)))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_of_the_services_declares_its_rule(service):
    routes = routes_of(app_of(service))
    assert routes, "no routes found: the route enumeration broke"
    missing = [f"{method} {path}" for method, path, rule in routes if rule is None]
    assert not missing, f"{service}: routes without require(...) or public(): {missing}"


@pytest.mark.parametrize("service", ["orders", "capacity", "quality", "identity"])
def test_health_metrics_and_documentation_are_public_and_everything_else_is_not(service):
    app = app_of(service)
    public = {path for _, path, rule in routes_of(app) if rule is not None and rule.public}
    assert {"/healthz", "/readyz", "/metrics"} <= public
    internal = [(m, p, r) for m, p, r in routes_of(app) if p.startswith("/internal/")]
    assert all(r is not None and r.roles == {"admin"} and not r.public for _, _, r in internal), internal
    if service != "identity":  # identity's token endpoint, sign-in, JWKS and discovery are public by nature
        assert public == {"/healthz", "/readyz", "/metrics"}


@pytest.mark.parametrize("service", ["orders", "capacity", "quality"])
def test_openapi_documents_bearer_and_client_credentials_so_docs_can_authorize(service):
    schema = app_of(service).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A JWT access token"}
    assert schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"].endswith("/oauth/token")
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            secured = {name for requirement in operation.get("security", []) for name in requirement}
            if path in ("/healthz", "/readyz", "/metrics"):
                assert not secured, f"{method} {path}"
            else:
                assert secured == {"bearer", "oauth2"}, f"{method} {path} documents no security"
                assert {"401", "403"} <= set(operation["responses"]), f"{method} {path} documents no 401/403"


# What each console action calls on the services (services/console/handlers.py); the console offers an action
# only to roles every one of those routes lets through, so no one is shown a page or a button the service refuses.
CONSOLE_CALLS: dict[str, list[tuple[str, str, str]]] = {
    "dashboard.view": [
        ("orders", "GET", "/v1/purchase-orders"),
        ("orders", "GET", "/v1/purchase-orders/{order_id}"),
        ("capacity", "GET", "/v1/availability"),
        ("quality", "GET", "/v1/certificates"),
        ("quality", "GET", "/v1/lots"),
    ],
    "orders.view": [
        ("orders", "GET", "/v1/purchase-orders"),
        ("orders", "GET", "/v1/purchase-orders/{order_id}"),
        ("orders", "GET", "/v1/purchase-orders/{order_id}/plans"),
        ("orders", "GET", "/v1/purchase-orders/{order_id}/shipments"),
        ("quality", "GET", "/v1/lots"),
    ],
    "orders.decide": [
        ("orders", "POST", "/v1/purchase-orders/{order_id}/replan"),
        ("orders", "POST", "/v1/purchase-orders/{order_id}/reject"),
    ],
    "orders.what_if": [
        ("orders", "POST", "/v1/what-if"),
        ("orders", "GET", "/v1/purchase-orders/{order_id}"),
        ("quality", "GET", "/v1/items"),
        ("orders", "GET", "/v1/buyers"),
        ("orders", "GET", "/v1/sites"),
    ],
    "shipments.view": [
        ("orders", "GET", "/v1/purchase-orders/{order_id}/shipments"),
        ("orders", "GET", "/v1/shipments/{shipment_id}"),
        ("quality", "GET", "/v1/lots/{lot_code}/trace"),
    ],
    "shipments.manage": [
        ("orders", "POST", "/v1/purchase-orders/{order_id}/shipments"),
        ("orders", "POST", "/v1/shipments/{shipment_id}/dispatch"),
        ("orders", "POST", "/v1/shipments/{shipment_id}/handover"),
    ],
    "members.view": [
        ("capacity", "GET", "/v1/foundries"),
        ("capacity", "GET", "/v1/foundries/{code}"),
        ("capacity", "GET", "/v1/availability"),
        ("capacity", "GET", "/v1/reservations"),
        ("capacity", "GET", "/v1/foundries/{code}/capacity-changes"),
        ("quality", "GET", "/v1/certificates"),
        ("quality", "GET", "/v1/lots"),
        ("quality", "GET", "/v1/quality-status"),
        ("quality", "GET", "/v1/foundries/{foundry_code}/quality-status"),
    ],
    "capacity.report": [("capacity", "POST", "/v1/foundries/{code}/capacity-changes")],
    "quality.view": [
        ("quality", "GET", "/v1/lots"),
        ("quality", "GET", "/v1/lots/{lot_code}"),
        ("quality", "GET", "/v1/specifications/{item_code}"),
    ],
    "quality.standing": [("quality", "GET", "/v1/certificates"), ("quality", "GET", "/v1/quality-status")],
    "quality.record": [("quality", "POST", "/v1/lots/{lot_code}/results")],
    "quality.override": [
        ("quality", "PUT", "/v1/foundries/{foundry_code}/quality-status/override"),
        ("quality", "DELETE", "/v1/foundries/{foundry_code}/quality-status/override"),
    ],
    "items.view": [
        ("quality", "GET", "/v1/items"),
        ("quality", "GET", "/v1/items/{item_code}"),
        ("quality", "GET", "/v1/specifications/{item_code}/versions"),
    ],
    "items.write": [
        ("quality", "POST", "/v1/items"),
        ("quality", "POST", "/v1/items/{item_code}/versions"),
        ("quality", "DELETE", "/v1/items/{item_code}"),
    ],
    "buyers.view": [("orders", "GET", "/v1/buyers"), ("orders", "GET", "/v1/sites")],
    "buyers.write": [
        ("orders", "POST", "/v1/buyers"),
        ("orders", "PATCH", "/v1/buyers/{buyer_code}"),
        ("orders", "POST", "/v1/sites"),
        ("orders", "PATCH", "/v1/sites/{site_code}"),
    ],
    "operations.view": [],  # the console's own dead-letter store and the services' public readiness and metrics
}


def test_the_console_offers_each_action_to_the_roles_the_services_allow():
    from services.console.domain import ACTIONS

    assert set(CONSOLE_CALLS) == set(ACTIONS), "every console action lists the service routes it calls"
    rules = {s: {(m, p): r for m, p, r in routes_of(app_of(s))} for s in ("orders", "capacity", "quality")}
    for action, calls in CONSOLE_CALLS.items():
        for service, method, path in calls:
            rule = rules[service][(method, path)]
            assert rule is not None and not rule.public, (service, method, path)
            allowed = {str(role) for role in rule.roles}
            assert ACTIONS[action] <= allowed, (
                f"console {action} is offered to {sorted(ACTIONS[action] - allowed)}, whom {service} {method} {path} refuses"
            )
    # An action is for everyone the services allow it to, not fewer: the writes match exactly.
    writes = ("orders.decide", "shipments.manage", "capacity.report", "quality.record", "quality.override", "items.write",
              "buyers.write")  # fmt: skip
    for action in writes:
        service, method, path = CONSOLE_CALLS[action][0]
        assert ACTIONS[action] == {str(role) for role in rules[service][(method, path)].roles} - {"buyer"}, action
