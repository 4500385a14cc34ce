"""One idempotency-key convention: the body's fingerprint and the answer to a key reused with another body."""

from __future__ import annotations

from shared.http import Conflict
from shared.idempotency import KeyReused, fingerprint


def test_the_fingerprint_ignores_key_order_but_not_values() -> None:
    body = {"po_number": "KAI/PO/1", "lines": [{"line_no": 1, "quantity": 1000}]}
    reordered = {"lines": [{"quantity": 1000, "line_no": 1}], "po_number": "KAI/PO/1"}
    assert fingerprint(body) == fingerprint(reordered)
    assert fingerprint(body) != fingerprint({**body, "lines": [{"line_no": 1, "quantity": 1001}]})
    assert len(fingerprint(body)) == 64


def test_a_reused_key_is_a_conflict_that_says_why() -> None:
    error = KeyReused()
    assert isinstance(error, Conflict) and error.status == 409
    assert error.detail == "this Idempotency-Key was already used with a different request body"
