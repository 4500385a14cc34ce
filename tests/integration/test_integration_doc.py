"""docs/integration.md tells buyers' IT teams the truth: every call it names exists, every buyer-facing call is
documented with its errors and with curl and Python examples that the API accepts, every example body fits the
API's models, every webhook event has a sample whose `data` has the fields the code sends, and the signature
verification it teaches accepts what the orders service signs and refuses what it should.

Markers in the document (HTML comments, invisible when rendered) say what to check:
`<!-- validate: Model -->` before a JSON block, `<!-- webhook: event.type -->` before a sample message, and
`<!-- check: client | receiver | verify-by-hand | verify-with-library -->` before Python blocks that are run.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import typing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
from standardwebhooks import WebhookVerificationError

from services.orders import api, webhooks
from services.orders.app import create_app
from shared import http as shared_http

REPO = Path(__file__).resolve().parents[2]
DOC_PATH = REPO / "docs" / "integration.md"
# Where webhook messages are made: `webhooks.enqueue(session, buyer, "type", data)` in the use cases, and
# `WebhookMessage("type", data)` in the decisions of the domain.
ENQUEUING_MODULES = [REPO / "services" / "orders" / name for name in ("handlers.py", "api.py", "domain.py", "replanning.py")]

BUYER_FACING = {
    ("POST", "/v1/purchase-orders"),
    ("GET", "/v1/purchase-orders"),
    ("GET", "/v1/purchase-orders/{order_id}"),
    ("POST", "/v1/purchase-orders/{order_id}/cancel"),
    ("GET", "/v1/purchase-orders/{order_id}/shipments"),
    ("GET", "/v1/shipments/{shipment_id}"),
    ("PUT", "/v1/buyers/{buyer_code}/webhook"),
    ("GET", "/v1/buyers/{buyer_code}/webhook"),
    ("POST", "/v1/buyers/{buyer_code}/webhook/ping"),
    ("POST", "/v1/buyers/{buyer_code}/webhook/rotate-secret"),
    ("GET", "/v1/buyers/{buyer_code}/webhook-deliveries"),
}
# Made by the cooperative's staff; the guide names them as what causes webhooks.
STAFF_ONLY = {
    ("POST", "/v1/purchase-orders/{order_id}/reject"),
    ("POST", "/v1/purchase-orders/{order_id}/replan"),
    ("POST", "/v1/purchase-orders/{order_id}/shipments"),
    ("POST", "/v1/shipments/{shipment_id}/dispatch"),
    ("POST", "/v1/shipments/{shipment_id}/handover"),
}
# Not part of the buyers' contract at all.
INTERNAL = {
    ("GET", "/v1/foundries"),
    ("GET", "/v1/purchase-orders/{order_id}/plans"),  # the plan history, read by the console
    ("GET", "/v1/audit"),  # the trail of changes, for the cooperative's admins
    ("POST", "/v1/what-if"),  # planners' questions; changes nothing, so no webhook follows (docs/orders.md)
    # The buyers and delivery sites the cooperative's admins keep (docs/orders.md); named in section 3.11.
    ("GET", "/v1/buyers"),
    ("GET", "/v1/buyers/{buyer_code}"),
    ("POST", "/v1/buyers"),
    ("PATCH", "/v1/buyers/{buyer_code}"),
    ("GET", "/v1/sites"),
    ("GET", "/v1/sites/{site_code}"),
    ("POST", "/v1/sites"),
    ("PATCH", "/v1/sites/{site_code}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
}

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
Operation = tuple[str, str]


# --- reading the document -----------------------------------------------------------------------------------


@cache
def doc() -> str:
    if not DOC_PATH.is_file():
        pytest.fail(f"{DOC_PATH.relative_to(REPO)} is missing", pytrace=False)
    return DOC_PATH.read_text()


class Block(typing.NamedTuple):
    lang: str
    text: str
    marker: str | None  # the `<!-- key: value -->` right before the block, if any
    line: int


def blocks() -> list[Block]:
    found = []
    pattern = re.compile(r"(?:<!--\s*(?P<marker>[^>]*?)\s*-->\n)?```(?P<lang>[a-z]*)\n(?P<text>.*?)^```$", re.S | re.M)
    for match in pattern.finditer(doc()):
        line = doc().count("\n", 0, match.start("text"))
        found.append(Block(match["lang"], match["text"], match["marker"], line))
    return found


def marked(key: str) -> list[tuple[str, Block]]:
    out = []
    for block in blocks():
        if block.marker and block.marker.split(":", 1)[0].strip() == key:
            out.append((block.marker.split(":", 1)[1].strip(), block))
    return out


def sections(level: str) -> dict[str, str]:
    """Heading text → the text up to the next heading of the same or a higher level."""
    parts = re.split(rf"^({level} .*)$", doc(), flags=re.M)
    return {parts[i].removeprefix(level + " ").strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


# --- reading the API ----------------------------------------------------------------------------------------


@cache
def openapi() -> dict[str, Any]:
    return create_app().openapi()


@cache
def operations() -> dict[Operation, dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in openapi()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def routes() -> list[APIRoute]:
    return [r for r in api.router.routes if isinstance(r, APIRoute)]


def route_for(method: str, path: str) -> APIRoute | None:
    for route in routes():
        if method in route.methods and route.path_regex.match(path):
            return route
    return None


def body_model(route: APIRoute) -> type[BaseModel] | None:
    hints = typing.get_type_hints(route.endpoint, include_extras=True)
    models = [t for name, t in hints.items() if name != "return" and isinstance(t, type) and issubclass(t, BaseModel)]
    return models[0] if models else None


def success_status(operation: dict[str, Any]) -> int:
    return next(int(s) for s in operation["responses"] if s.startswith("2"))


def declared_errors(operation: dict[str, Any]) -> set[int]:
    """The problem statuses the endpoint declares with `problem_responses` (FastAPI's automatic 422 left out)."""
    return {int(s) for s, r in operation["responses"].items() if int(s) >= 400 and r.get("description") != "Validation Error"}


def model_named(name: str) -> type[BaseModel]:
    for module in (api, shared_http):
        model = getattr(module, name, None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
    raise AssertionError(f"the document validates an example against {name!r}, which is no model of the API")


def call_mentions(text: str) -> Iterator[Operation]:
    for match in re.finditer(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)", text):
        yield match[1], match[2]


def section_of(operation: Operation) -> str:
    method, path = operation
    for heading, text in sections("###").items():
        if f"`{method} {path}`" in heading:
            return text
    raise AssertionError(f"docs/integration.md has no section headed with `{method} {path}`")


# --- the calls ----------------------------------------------------------------------------------------------


def test_every_operation_of_the_api_is_either_documented_for_buyers_or_known_not_to_be() -> None:
    api_operations = set(operations())
    unclassified = api_operations - BUYER_FACING - STAFF_ONLY - INTERNAL
    assert not unclassified, (
        f"new operations {sorted(unclassified)}: document them in docs/integration.md if buyers call them (and add "
        "them to BUYER_FACING), or add them to STAFF_ONLY / INTERNAL"
    )
    gone = (BUYER_FACING | STAFF_ONLY | INTERNAL) - api_operations
    assert not gone, f"operations no longer in the API: {sorted(gone)}; update docs/integration.md and this test"


def test_every_call_the_document_names_exists() -> None:
    named = set(call_mentions(doc()))
    assert named >= BUYER_FACING
    missing = {op for op in named if op not in operations()}
    assert not missing, f"docs/integration.md names calls the API does not have: {sorted(missing)}"


def test_every_buyer_facing_call_has_a_section_listing_its_success_status_and_declared_errors() -> None:
    for operation in sorted(BUYER_FACING):
        text = section_of(operation)
        statuses = {int(s) for s in re.findall(r"`(\d{3})\b", text)}
        spec = operations()[operation]
        assert success_status(spec) in statuses, (
            f"{operation}: the section does not give the success status {success_status(spec)}"
        )
        missing = declared_errors(spec) - statuses
        assert not missing, f"{operation}: the API declares errors {sorted(missing)} the section does not list"


def test_staff_calls_are_named_as_what_causes_webhooks() -> None:
    staff = sections("###")["3.11 Calls made by the cooperative"]
    assert set(call_mentions(staff)) >= STAFF_ONLY


def test_every_problem_status_the_api_declares_is_explained() -> None:
    errors = sections("##")["4. Errors"]
    declared = set().union(*(declared_errors(op) for key, op in operations().items() if key in BUYER_FACING))
    for status in declared:
        assert f"`{status} " in errors, f"section 4 does not explain {status}"


# --- examples -----------------------------------------------------------------------------------------------


def same_shape(example: Any, full: Any, where: str, exact: bool) -> None:
    """The example's keys are the model's (all of them when `exact`), at every level."""
    if isinstance(example, dict):
        assert isinstance(full, dict), where
        extra = set(example) - set(full)
        assert not extra, f"{where}: fields the model does not have: {sorted(extra)}"
        if exact:
            missing = set(full) - set(example)
            assert not missing, f"{where}: fields the API returns that the example leaves out: {sorted(missing)}"
        for key in example:
            same_shape(example[key], full[key], f"{where}.{key}", exact)
    elif isinstance(example, list):
        assert isinstance(full, list) and len(full) == len(example), where
        for i, (a, b) in enumerate(zip(example, full, strict=False)):
            same_shape(a, b, f"{where}.{i}", exact)


def test_every_json_example_fits_its_model() -> None:
    examples = marked("validate")
    assert {name for name, _ in examples} >= {
        "PurchaseOrderIn", "PurchaseOrderOut", "PurchaseOrderPage", "PurchaseOrderDetail", "CancelIn", "ShipmentOut",
        "WebhookEndpointIn", "WebhookEndpointOut", "WebhookDeliveryOut", "Problem",
    }  # fmt: skip
    for name, block in examples:
        model = model_named(name)
        instance = model.model_validate_json(block.text)  # as the API parses a request: strict where it is strict
        request_model = model.model_config.get("extra") == "forbid"
        full = instance.model_dump(mode="json", exclude_none=model is shared_http.Problem)
        same_shape(json.loads(block.text), full, f"{name} example (line {block.line})", exact=not request_model)


def curl_commands() -> Iterator[tuple[list[str], Block]]:
    for block in blocks():
        if block.lang != "sh":
            continue
        for command in block.text.replace("\\\n", " ").splitlines():
            if command.strip().startswith("curl "):
                yield shlex.split(command, comments=True), block


def test_curl_examples_call_real_operations_with_valid_bodies() -> None:
    called: set[Operation] = set()
    for argv, block in curl_commands():
        method, url, body, headers = "GET", None, None, {}
        i = 1
        while i < len(argv):
            arg = argv[i]
            if arg in ("-X", "--request"):
                method, i = argv[i + 1], i + 1
            elif arg in ("-H", "--header"):
                name, _, value = argv[i + 1].partition(":")
                headers[name.strip().lower()] = value.strip()
                i += 1
            elif arg in ("-d", "--data", "--data-binary", "--data-raw"):
                body, i = argv[i + 1], i + 1
            elif not arg.startswith("-"):
                url = arg
            i += 1
        if url == "$CEPER_TOKEN_URL":  # getting a token: the client credentials grant, authenticated by Basic
            assert body == "grant_type=client_credentials" and "-u" in argv, f"line {block.line}: {argv}"
            continue
        assert url is not None and url.startswith("$CEPER_URL/"), f"line {block.line}: {argv}"
        assert headers.get("authorization") == "Bearer $CEPER_TOKEN", f"line {block.line}: the example sends no token"
        path = urlsplit(url.removeprefix("$CEPER_URL")).path
        route = route_for(method, path)
        assert route is not None, f"line {block.line}: curl calls {method} {path}, which the API does not have"
        operation = (method, route.path)
        called.add(operation)
        model = body_model(route)
        if body is not None and not body.startswith("@"):
            assert model is not None, f"line {block.line}: {operation} takes no body"
            model.model_validate_json(body)
        for parameter in operations()[operation].get("parameters", []):
            if parameter["in"] == "header" and parameter.get("required"):
                assert parameter["name"].lower() in headers, (
                    f"line {block.line}: {operation} needs the {parameter['name']} header"
                )
    assert called >= BUYER_FACING, f"buyer-facing calls without a curl example: {sorted(BUYER_FACING - called)}"


class FakeApi:
    """Stands in for the orders API under the Python examples: refuses calls the API would refuse (unknown
    operation, invalid body, missing required header, unknown query parameter) and answers with the
    document's own response examples."""

    def __init__(self) -> None:
        self.called: set[Operation] = set()
        self.tokens = 0
        self.examples: dict[str, Any] = {}
        for name, block in marked("validate"):
            self.examples.setdefault(name, json.loads(block.text))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        if request.url.host == "identity.invalid":  # the token endpoint: the grant as identity's tests check it
            assert request.headers["authorization"].startswith("Basic ") and request.content == b"grant_type=client_credentials"
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"token-{self.tokens}", "token_type": "Bearer", "expires_in": 600})
        assert request.headers.get("authorization", "").startswith("Bearer token-"), f"{method} {path} sends no token"
        route = route_for(method, path)
        assert route is not None, f"a Python example calls {method} {path}, which the API does not have"
        operation = (method, route.path)
        self.called.add(operation)
        spec = operations()[operation]
        parameters = spec.get("parameters", [])
        for parameter in parameters:
            if parameter["in"] == "header" and parameter.get("required"):
                assert parameter["name"] in request.headers, f"{operation}: the Python example sends no {parameter['name']}"
        allowed = {p["name"] for p in parameters if p["in"] == "query"}
        unknown = {name for name, _ in parse_qsl(request.url.query.decode())} - allowed
        assert not unknown, f"{operation}: the Python example sends unknown query parameters {sorted(unknown)}"
        model = body_model(route)
        if model is not None:
            model.model_validate_json(request.content)
        else:
            assert not request.content, f"{operation} takes no body"
        answer = route.response_model
        listed = typing.get_origin(answer) is list
        name = (typing.get_args(answer)[0] if listed else answer).__name__
        assert name in self.examples, f"{operation} answers {name}: docs/integration.md has no example of it"
        content = [self.examples[name]] if listed else self.examples[name]
        return httpx.Response(success_status(spec), json=content)


def test_python_examples_run_against_the_api_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeApi()
    real_client = httpx.Client

    def client(*args: Any, **kwargs: Any) -> httpx.Client:
        return real_client(*args, **kwargs, transport=httpx.MockTransport(fake))

    monkeypatch.setattr(httpx, "Client", client)
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    monkeypatch.setenv("CEPER_URL", "http://orders.invalid")
    monkeypatch.setenv("CEPER_TOKEN_URL", "http://identity.invalid/oauth/token")
    monkeypatch.setenv("CEPER_CLIENT_ID", "kai-procurement")
    monkeypatch.setenv("CEPER_CLIENT_SECRET", "s3cret")
    namespace: dict[str, Any] = {}
    examples = marked("check")
    assert any(kind == "client" for kind, _ in examples)
    for kind, block in examples:
        if kind in ("token", "client"):
            exec(compile(block.text, f"{DOC_PATH}:{block.line}", "exec"), namespace)
    assert fake.called >= BUYER_FACING, f"buyer-facing calls without a Python example: {sorted(BUYER_FACING - fake.called)}"
    assert fake.tokens == 1, "the client should reuse its token until it expires"


def test_getting_a_token_as_the_guide_shows_works_against_the_identity_service() -> None:
    """The guide's token examples (httpx and Authlib), run against a real identity process with a buyer client."""
    from tests.integration.identity_support import identity_process

    with identity_process() as identity:
        client = identity.add_client("kai-procurement", "buyer", "KAI")
        env = {"CEPER_TOKEN_URL": f"{identity.url}/oauth/token", "CEPER_CLIENT_ID": client["client_id"],
               "CEPER_CLIENT_SECRET": client["client_secret"], "CEPER_URL": "http://orders.invalid"}  # fmt: skip
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            namespace: dict[str, Any] = {}
            for kind, block in marked("check"):
                if kind in ("token", "token-authlib"):
                    exec(compile(block.text, f"{DOC_PATH}:{block.line}", "exec"), namespace)
            issued = namespace["fetch_token"]()
            assert issued["token_type"] == "Bearer" and issued["expires_in"] > 60
            assert namespace["token"]["access_token"].count(".") == 2  # Authlib got a signed JWT too
            claims = json.loads(base64url(issued["access_token"].split(".")[1]))
            assert (claims["roles"], claims["buyer_code"]) == (["buyer"], "KAI")
            with pytest.raises(httpx.HTTPStatusError) as refused:
                namespace["CREDENTIALS"] = (client["client_id"], "not-the-secret")
                namespace["fetch_token"]()
            assert refused.value.response.json()["error"] == "invalid_client"


def base64url(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- webhooks -----------------------------------------------------------------------------------------------


def data_keys_enqueued() -> dict[str, tuple[set[str], bool]]:
    """Event type → (the keys the code puts in `data`, whether more may come from an expression read here)."""

    def functions(tree: ast.AST) -> dict[str, ast.AST]:
        return {f.name: f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}

    def keys_of(node: ast.AST, scope: ast.AST, module: dict[str, ast.AST]) -> tuple[set[str], bool]:
        if isinstance(node, ast.Name):  # a name: read as {**name}
            node = ast.Dict(keys=[None], values=[node])
        if not isinstance(node, ast.Dict):
            return set(), True
        keys: set[str] = set()
        unknown = False
        for key, value in zip(node.keys, node.values, strict=False):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                keys.add(key.value)
                continue
            if key is not None:
                unknown = True
                continue
            resolved: tuple[set[str], bool] = (set(), True)
            if isinstance(value, ast.Name):
                # **name: a dict literal assigned to it in the same function, or, for a loop variable over a
                # list, the dict literal appended to that list.
                assigned = [
                    a.value for a in ast.walk(scope)
                    if isinstance(a, ast.Assign) and any(isinstance(t, ast.Name) and t.id == value.id for t in a.targets)
                ]  # fmt: skip
                for loop in ast.walk(scope):
                    if (
                        isinstance(loop, ast.For)
                        and isinstance(loop.target, ast.Name)
                        and loop.target.id == value.id
                        and isinstance(loop.iter, ast.Name)
                    ):
                        assigned += [
                            c.args[0] for c in ast.walk(scope)
                            if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "append"
                            and isinstance(c.func.value, ast.Name) and c.func.value.id == loop.iter.id and c.args
                        ]  # fmt: skip
                if len(assigned) == 1:
                    resolved = keys_of(assigned[0], scope, module)
            elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in module:
                helper = module[value.func.id]  # **helper(...): the dict literal the helper returns
                returns = [r.value for r in ast.walk(helper) if isinstance(r, ast.Return) and r.value is not None]
                if len(returns) == 1:
                    resolved = keys_of(returns[0], helper, module)
            keys |= resolved[0]
            unknown = unknown or resolved[1]
        return keys, unknown

    found: dict[str, tuple[set[str], bool]] = {}
    for path in ENQUEUING_MODULES:
        tree = ast.parse(path.read_text())
        module = functions(tree)
        for scope in module.values():
            for call in ast.walk(scope):
                if not isinstance(call, ast.Call):
                    continue
                func = call.func
                if isinstance(func, ast.Name) and func.id == "WebhookMessage":
                    event_type, data = call.args[0], call.args[1]
                elif (
                    isinstance(func, ast.Attribute)
                    and func.attr == "enqueue"
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "webhooks"
                ):
                    event_type, data = call.args[2], call.args[3]
                    if isinstance(event_type, ast.Attribute) and event_type.attr == "event_type":
                        continue  # sends a WebhookMessage: counted where it is made
                else:
                    continue
                assert isinstance(event_type, ast.Constant), f"{path.name}:{call.lineno}: event type is not a literal"
                keys, unknown = keys_of(data, scope, module)
                earlier_keys, earlier_unknown = found.get(event_type.value, (set(), False))
                found[event_type.value] = (earlier_keys | keys, earlier_unknown or unknown)
    return found


def test_every_webhook_event_has_a_sample_message_with_the_fields_the_code_sends() -> None:
    samples: dict[str, dict[str, Any]] = {}
    for event_type, block in marked("webhook"):
        assert event_type not in samples, f"two samples for {event_type}"
        samples[event_type] = json.loads(block.text)
    assert set(samples) == set(webhooks.WEBHOOK_EVENT_TYPES), "one sample per event type of services.orders.webhooks"
    headings = sections("####")
    enqueued = data_keys_enqueued()
    assert set(enqueued) == set(webhooks.WEBHOOK_EVENT_TYPES), f"enqueued by the code: {sorted(enqueued)}"
    for event_type, message in samples.items():
        assert f"`{event_type}`" in headings, f"no `#### `{event_type}`` section"
        assert set(message) == {"id", "type", "timestamp", "data"} and message["type"] == event_type
        assert message["id"].startswith("msg_")
        assert datetime.fromisoformat(message["timestamp"]).utcoffset() == timedelta(0)
        keys, open_ended = enqueued[event_type]
        sample_keys = set(message["data"])
        assert keys <= sample_keys, f"{event_type}: the code sends {sorted(keys - sample_keys)}, missing from the sample"
        if not open_ended:
            assert sample_keys == keys, f"{event_type}: the sample has {sorted(sample_keys - keys)}, which the code never sends"


def test_the_retry_schedule_in_the_document_is_the_dispatchers() -> None:
    def spoken(seconds: int) -> str:
        return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"

    schedule = ", ".join(spoken(s) for s in webhooks.RETRY_DELAYS_S[:-1]) + " and " + spoken(webhooks.RETRY_DELAYS_S[-1])
    delivery = sections("###")["6.3 Delivery: what counts, retries, order"]
    assert schedule in " ".join(delivery.split()), f"expected the retry schedule {schedule!r}"
    assert f"{len(webhooks.RETRY_DELAYS_S) + 1} attempts" in delivery.replace("ten attempts", "10 attempts")


# --- signatures ---------------------------------------------------------------------------------------------


def run_check_block(kind: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    found = [block for k, block in marked("check") if k == kind]
    assert len(found) == 1, f"docs/integration.md should have one `<!-- check: {kind} -->` block"
    namespace = {} if namespace is None else namespace
    exec(compile(found[0].text, f"{DOC_PATH}:{found[0].line}", "exec"), namespace)
    return namespace


def signed_message(secret: str, at: datetime, event_type: str = "order.accepted") -> tuple[dict[str, str], bytes]:
    message_id = "msg_0123456789abcdef0123456789abcdef"
    body = webhooks.body_of(message_id, event_type, at, {"order_id": "po_1", "po_number": "KAI/PO/2027/00042", "plan_version": 1})
    return webhooks.sign(secret, message_id, at, body), body.encode()


def test_verifying_by_hand_accepts_what_orders_signs_and_refuses_the_rest() -> None:
    ns = run_check_block("verify-by-hand")
    verify, invalid = ns["verify_webhook"], ns["InvalidWebhook"]
    secret = webhooks.new_secret()
    now = datetime.now(UTC)
    headers, body = signed_message(secret, now)

    assert verify(secret, headers, body) == json.loads(body)
    assert verify(secret, {k.upper(): v for k, v in headers.items()}, body)["type"] == "order.accepted"
    several = {**headers, "webhook-signature": "v1,bm90IHRoZSBzaWduYXR1cmU= " + headers["webhook-signature"]}
    assert verify(secret, several, body)["id"] == headers["webhook-id"]
    four_minutes_ago = signed_message(secret, now - timedelta(minutes=4))
    assert verify(secret, *four_minutes_ago)

    refused = [
        (secret, headers, body.replace(b'"plan_version":1', b'"plan_version":2')),  # altered body
        (webhooks.new_secret(), headers, body),  # someone else's secret
        (secret, {**headers, "webhook-id": "msg_other"}, body),  # signature of another message
        (secret, {**headers, "webhook-signature": "v2," + headers["webhook-signature"][3:]}, body),  # not v1
        (secret, {k: v for k, v in headers.items() if k != "webhook-timestamp"}, body),
        (secret, {**headers, "webhook-timestamp": "yesterday"}, body),
        (secret, *signed_message(secret, now - timedelta(minutes=6))),  # replayed: too old
        (secret, *signed_message(secret, now + timedelta(minutes=6))),  # too far ahead
    ]
    for args in refused:
        with pytest.raises(invalid):
            verify(*args)


def test_verifying_with_the_library_accepts_what_orders_signs_and_refuses_the_rest() -> None:
    verify = run_check_block("verify-with-library")["verify_with_library"]
    secret = webhooks.new_secret()
    now = datetime.now(UTC)
    headers, body = signed_message(secret, now)
    assert verify(secret, headers, body) == json.loads(body)
    for args in [
        (secret, headers, body + b" "),
        (webhooks.new_secret(), headers, body),
        (secret, *signed_message(secret, now - timedelta(minutes=6))),
    ]:
        with pytest.raises(WebhookVerificationError):
            verify(*args)


def test_the_sample_http_message_is_really_signed_with_the_sample_secret() -> None:
    verify = run_check_block("verify-by-hand")["verify_webhook"]
    (http_block,) = [b for b in blocks() if b.lang == "http"]
    head, _, body = http_block.text.partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    secret = json.loads(next(b.text for name, b in marked("validate") if name == "WebhookEndpointOut"))["secret"]
    message = verify(secret, headers, body.strip().encode(), now=float(headers["webhook-timestamp"]))
    accepted = json.loads(next(b.text for name, b in marked("webhook") if name == "order.accepted"))
    assert message == accepted, "the sample request and the order.accepted sample should be the same message"


def test_the_receiver_verifies_deduplicates_and_refuses_forgeries(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = webhooks.new_secret()
    monkeypatch.setenv("CEPER_WEBHOOK_SECRET", secret)
    processed: list[dict[str, Any]] = []
    ns = run_check_block("verify-by-hand")
    ns["process_later"] = processed.append
    handle = run_check_block("receiver", ns)["handle_webhook"]
    headers, body = signed_message(secret, datetime.now(UTC))

    assert handle(headers, body) == 200
    assert handle(headers, body) == 200  # a retry of the same message
    assert [m["id"] for m in processed] == [headers["webhook-id"]]
    forged_headers, forged_body = signed_message(webhooks.new_secret(), datetime.now(UTC))
    assert handle(forged_headers, forged_body) == 401
    assert len(processed) == 1
