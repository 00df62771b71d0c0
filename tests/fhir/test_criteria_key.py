"""Conditional criteria's canonical key (hub.store.locks.criteria_key): the lock name and the
key by which a transaction's conditional writes and references are matched."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from hub.store.locks import criteria_key


def _by_parsing(res_type: str, query: str) -> str:
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return res_type + "?" + "&".join(f"{k}={v}" for k, v in pairs)


@given(st.text(alphabet=st.sampled_from("ab=&%+|:/.20 中"), max_size=20))
def test_the_key_is_the_parsed_and_sorted_parameters(query: str) -> None:
    # Queries with one plain parameter skip parse_qsl: the key must be the same either way.
    assert criteria_key("Patient", query) == _by_parsing("Patient", query)


def test_order_and_encoding_do_not_matter() -> None:
    system = "https://ygt.example.org/fhir/sid/XRMYY/mrn"
    plain = criteria_key("Patient", f"identifier={system}|M1")
    assert plain == f"Patient?identifier={system}|M1"
    assert (
        criteria_key(
            "Patient", "identifier=https%3A%2F%2Fygt.example.org%2Ffhir%2Fsid%2FXRMYY%2Fmrn%7CM1"
        )
        == plain
    )
    assert (
        criteria_key("Patient", "b=2&a=1")
        == criteria_key("Patient", "a=1&b=2")
        == "Patient?a=1&b=2"
    )
