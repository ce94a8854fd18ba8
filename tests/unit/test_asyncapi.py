"""docs/asyncapi.json and docs/schema/*.json are what the code says: regenerated and compared here
(CI), every subject and message is in them, every reference resolves, and the intent schema accepts
exactly what the gateway accepts."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from bus.topology import INTAKE_SUBJECT, STREAMS
from core.coordinator import to_result
from core.intake import IntentError, parse_intent
from jetexec import asyncapi
from schemas.codec import encode
from schemas.enums import ExecutionState, OrderState, OrderType, Side
from schemas.messages import ChildRecord, Command, ExecutionRecord, Fact, Intent

REPO = Path(__file__).resolve().parents[2]
DOC = json.loads((REPO / "docs" / "asyncapi.json").read_text())


def test_the_checked_in_documents_match_the_code():
    assert asyncapi.main(["--check"]) == 0, "run `python -m jetexec.asyncapi` and commit docs/asyncapi.json and docs/schema/"


def _wildcard(address: str) -> str:
    return re.sub(r"\{[^}]+\}", "*", address)


def test_every_subject_and_message_is_described():
    addresses = {_wildcard(c["address"]) for c in DOC["channels"].values()}
    for stream in STREAMS:
        for subject in stream.subjects:
            pattern = subject.replace(".", r"\.").replace("*", r"[^.]+").replace(">", r".+")
            assert any(re.fullmatch(pattern, a.replace("*", "x")) for a in addresses), f"stream {stream.name} subject {subject} has no channel"
    assert INTAKE_SUBJECT in addresses
    messages = set(DOC["components"]["messages"])
    for t in (*Fact.__args__, *Command.__args__):
        assert t.__name__ in messages, f"{t.__name__} is not in the AsyncAPI document"
    assert {"Nats-Msg-Id", "traceparent"} <= set(DOC["components"]["messages"]["ChildFill"]["headers"]["properties"])
    assert "Jetexec-Reason" in DOC["components"]["messages"]["DeadLetter"]["headers"]["properties"]


def test_the_venue_operations_are_the_ones_the_paper_exchange_serves():
    source = (REPO / "workers" / "paper_exchange" / "handler.py").read_text()
    served = set(re.findall(r'^\s+"(\w+)": self\._\w+,$', source, re.M))
    assert served == set(asyncapi.VENUE_OPS), (served ^ set(asyncapi.VENUE_OPS))


def _refs(node, found):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                found.append(v)
            else:
                _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)
    return found


def _resolve(ref: str):
    node = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_document_is_asyncapi_3_and_every_reference_resolves():
    assert DOC["asyncapi"] == "3.0.0" and DOC["info"]["title"] and DOC["channels"] and DOC["operations"]
    for ref in _refs(DOC, []):
        assert ref.startswith("#/"), ref
        _resolve(ref)  # KeyError when dangling
    for name, op in DOC["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel = op["channel"]["$ref"].split("/")[-1]
        for m in op["messages"]:
            assert m["$ref"].startswith(f"#/channels/{channel}/messages/"), (name, m)
    for key, channel in DOC["channels"].items():
        for param in re.findall(r"\{([^}]+)\}", channel["address"]):
            assert param in channel.get("parameters", {}), (key, param)


INTENT_SCHEMA = json.loads((REPO / "docs" / "schema" / "intent.schema.json").read_text())
RESULT_SCHEMA = json.loads((REPO / "docs" / "schema" / "result.schema.json").read_text())
GOOD = {"symbol": "AAPL", "side": "BUY", "qty": 10}


@pytest.mark.parametrize(
    "doc",
    [
        GOOD,
        {**GOOD, "qty": "0.05", "strategy_id": "s-1/a", "urgency": "HIGH", "split": "TWAP", "horizon_s": 30, "client_key": "k"},
        {**GOOD, "order_type": "LIMIT", "price": "190.05"},
        {**GOOD, "urgncy": "HIGH"},
        {**GOOD, "qty": "1e3"},
        {**GOOD, "qty": "-1"},
        {**GOOD, "side": "HOLD"},
        {**GOOD, "order_type": "LIMIT"},
        {**GOOD, "price": "10"},
        {**GOOD, "horizon_s": 0},
        {"side": "BUY", "qty": 1},
        {**GOOD, "strategy_id": "a b"},
    ],
)
def test_the_intent_schema_accepts_what_the_gateway_accepts(doc):
    try:
        parse_intent(json.dumps(doc).encode())
        gateway = True
    except IntentError:
        gateway = False
    schema = jsonschema.Draft202012Validator(INTENT_SCHEMA).is_valid(doc)
    assert schema == gateway, (doc, schema, gateway)


def test_a_result_validates_against_the_result_schema():
    intent = Intent(symbol="AAPL", side=Side.BUY, qty=Decimal(10), order_type=OrderType.LIMIT, strategy_id="s", price=Decimal("190.5"))
    child = ChildRecord(client_order_id="c1-00-0", index=0, qty=Decimal(10), order_type=OrderType.LIMIT, price=Decimal("190.5"), state=OrderState.FILLED, filled_qty=Decimal(10), notional=Decimal(1905))
    record = ExecutionRecord(cid="x" + "1" * 23, idempotency_key="ik-1", state=ExecutionState.COMPLETE, intent=intent, children=[child], target_qty=Decimal(10))
    jsonschema.Draft202012Validator(RESULT_SCHEMA).validate(json.loads(encode(to_result(record))))
