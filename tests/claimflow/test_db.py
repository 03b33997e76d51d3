"""Reading JSON columns: orjson where it reads the same, ``json.loads`` for what it refuses."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import JSON, text
from sqlalchemy.dialects.postgresql import JSONB

from claimflow.db import create_db_engine, json_loads

_numbers = (
    st.integers()
    | st.integers(min_value=2**62, max_value=2**70)  # around the 64-bit edge, where orjson would read floats
    | st.integers(max_value=-(2**62), min_value=-(2**70))
    | st.floats(allow_nan=False, allow_infinity=False)
)
_documents = st.recursive(
    st.none() | st.booleans() | _numbers | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(_documents)
def test_a_document_reads_back_as_json_loads_reads_it(document: object) -> None:
    written = json.dumps(document, ensure_ascii=False)
    expected = json.loads(written)
    for read in (json_loads(written), json_loads(written.encode())):
        assert read == expected and repr(read) == repr(expected)  # repr: 3 == 3.0, but not as a document


def test_integers_beyond_64_bits_and_huge_numbers_fall_back_to_json_loads() -> None:
    assert json_loads('{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
    assert math.isinf(json_loads("[1e400]")[0])


def test_a_json_column_reads_through_the_engines_loader(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert engine.dialect._json_deserializer is json_loads  # type: ignore[attr-defined]
        postgres = engine.dialect.name == "postgresql"
        query = text("SELECT CAST(:doc AS JSONB) AS d" if postgres else "SELECT :doc AS d").columns(
            d=JSONB if postgres else JSON
        )
        with engine.connect() as connection:
            for document in ({"n": 1, "at": "2026-03-02T01:30:00Z"}, {"big": 123456789012345678901234567890}):
                assert connection.execute(query, {"doc": json.dumps(document)}).scalar_one() == document
    finally:
        engine.dispose()
