"""The mapping's entry ids and conditional URLs, checked against the standard library's."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from adapters.hl7v2.datatypes import identifier_query, search_escape
from adapters.hl7v2.mapped import _NAMESPACE, uuid5_text


@given(st.text())
def test_uuid5_text_is_uuid5_of_the_mapping_namespace(name: str) -> None:
    assert uuid5_text(name) == str(uuid.uuid5(_NAMESPACE, name))


@given(st.text(), st.sampled_from(["https://ygt.example.org/fhir/sid/XRMYY/mrn", "urn:oid:1.2"]))
def test_identifier_query_encodes_as_quote_does(value: str, system: str) -> None:
    # Plain values skip quote(); the result must be the same either way.
    token = f"{system}|{search_escape(value)}"
    assert identifier_query(system, value) == "identifier=" + quote(token, safe="|:/")


def test_identifier_query_of_a_plain_and_an_encoded_value() -> None:
    system = "https://ygt.example.org/fhir/sid/XRMYY/mrn"
    assert identifier_query(system, "ZY-0001.a_b~") == f"identifier={system}|ZY-0001.a_b~"
    assert identifier_query(system, "a b|c") == f"identifier={system}|a%20b%5C|c"
