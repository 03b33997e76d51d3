"""The hash chain: any change, removal or reordering of an event is found, and the first broken link named."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.audit import (
    GENESIS,
    GENESIS_HASH,
    ChainLink,
    ChainTip,
    canonical_content,
    canonical_time,
    chain_hash,
    next_link,
    verify_chain,
)
from models.enums import CaseKind, Channel

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _chain(n: int, case: str = "CLM-2026-000001") -> list[ChainLink]:
    links, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        at, data = T0 + timedelta(minutes=i), {"step": i, "note": "审核 review"}
        h = chain_hash(
            prev,
            canonical_content(case_number=case, sequence=i, at=at, actor="li.wei", type="moved", data=data),
        )
        links.append(ChainLink(i, at, "li.wei", "moved", data, prev, h))
        prev = h
    return links


def test_an_untouched_chain_verifies() -> None:
    assert verify_chain("CLM-2026-000001", _chain(5)) is None


def test_an_empty_chain_verifies() -> None:
    assert verify_chain("CLM-2026-000001", []) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(lambda e: replace(e, data={**e.data, "step": 99}), "altered", id="data-changed"),
        pytest.param(lambda e: replace(e, actor="intruder"), "altered", id="actor-changed"),
        pytest.param(lambda e: replace(e, at=e.at + timedelta(microseconds=1)), "altered", id="time-moved"),
        pytest.param(lambda e: replace(e, type="approve"), "altered", id="type-changed"),
        pytest.param(lambda e: replace(e, prev_hash="f" * 64), "prev_hash", id="link-cut"),
    ],
)
def test_a_tampered_event_is_named(change, reason: str) -> None:
    links = _chain(5)
    links[2] = change(links[2])
    found = verify_chain("CLM-2026-000001", links)
    assert found is not None
    assert found.sequence == 3
    assert reason in found.reason
    assert "CLM-2026-000001 event #3" in str(found)


def test_a_removed_event_is_found_where_the_gap_is() -> None:
    links = _chain(5)
    del links[1]
    found = verify_chain("CLM-2026-000001", links)
    assert found is not None and found.sequence == 3 and "where 2 was expected" in found.reason


def test_a_rewritten_tail_with_recomputed_hashes_still_breaks_at_the_seam() -> None:
    links = _chain(4)
    forged = replace(links[1], data={"step": 2, "note": "forged"})
    content = canonical_content(
        case_number="CLM-2026-000001",
        sequence=2,
        at=forged.at,
        actor=forged.actor,
        type=forged.type,
        data=forged.data,
    )
    links[1] = replace(forged, hash=chain_hash(forged.prev_hash, content))
    found = verify_chain("CLM-2026-000001", links)
    assert found is not None and found.sequence == 3 and "prev_hash" in found.reason


def test_events_moved_to_another_case_do_not_verify_there() -> None:
    found = verify_chain("CLM-2026-000002", _chain(2))
    assert found is not None and found.sequence == 1


def test_one_instant_has_one_spelling_whatever_its_zone() -> None:
    shanghai = timezone(timedelta(hours=8))
    assert canonical_time(T0) == canonical_time(T0.astimezone(shanghai)) == "2026-03-02T09:00:00.000000Z"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        canonical_time(datetime(2026, 1, 1))


def test_content_is_canonical_json_with_decimals_as_text() -> None:
    text = canonical_content(
        case_number="C", sequence=1, at=T0, actor="a", type="t", data={"b": Decimal("10.50"), "a": "中文"}
    )
    assert text == (
        '{"actor":"a","at":"2026-03-02T09:00:00.000000Z","case":"C","data":{"a":"中文","b":"10.50"},"seq":1,"type":"t"}'
    )


# --- placing new events on a chain --------------------------------------------------------------------------


def test_next_link_chains_as_the_verifier_checks() -> None:
    expected = _chain(4)
    tip, links = GENESIS, []
    for link in expected:
        new = next_link("CLM-2026-000001", tip, at=link.at, actor=link.actor, type=link.type, data=link.data)
        links.append(ChainLink(new.sequence, link.at, link.actor, link.type, new.data, new.prev_hash, new.hash))
        tip = new.tip
    assert links == expected
    assert verify_chain("CLM-2026-000001", links) is None
    assert tip == ChainTip(4, expected[-1].hash)


def test_next_link_stores_the_data_as_it_reads_back_and_hashes_that() -> None:
    data = {"amount": Decimal("10.50"), "due": T0, "tags": ("a", "b"), 7: None}
    new = next_link("C", GENESIS, at=T0, actor="a", type="t", data=data)
    assert new.data == {"amount": "10.50", "due": "2026-03-02T09:00:00.000000Z", "tags": ["a", "b"], "7": None}
    assert (new.sequence, new.prev_hash) == (1, GENESIS_HASH)
    content = canonical_content(case_number="C", sequence=1, at=T0, actor="a", type="t", data=data)
    assert new.hash == chain_hash(GENESIS_HASH, content)  # the same hash the stored data verifies with
    assert canonical_content(case_number="C", sequence=1, at=T0, actor="a", type="t", data=new.data) == content


def test_next_link_continues_from_the_tip_it_is_given() -> None:
    tip = ChainTip(41, "a" * 64)
    new = next_link("C", tip, at=T0, actor="a", type="t", data={})
    assert (new.sequence, new.prev_hash) == (42, "a" * 64)
    assert new.tip == ChainTip(42, new.hash) != tip


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])),
)  # fmt: skip
_values = st.recursive(
    _json_scalars
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from([*CaseKind, *Channel])
    | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@given(st.dictionaries(st.text(max_size=8), _values, max_size=6))
def test_normalised_data_is_what_the_json_round_trip_gives(data: dict) -> None:
    """Flat data takes a shortcut; whatever the shape, the result is the round trip's."""
    import json

    from models.audit import _plain, normalise_data

    stored, round_trip = normalise_data(data), json.loads(json.dumps(data, default=_plain, ensure_ascii=False))
    assert repr(stored) == repr(round_trip)  # the same types too: a text enum equals its text, but is not it


def test_normalised_data_turns_enums_and_times_into_text() -> None:
    from models.audit import normalise_data
    from models.enums import CaseKind

    at = datetime(2026, 3, 2, 17, 30, tzinfo=timezone(timedelta(hours=8)))
    stored = normalise_data({"kind": CaseKind.claim, "at": at, "amount": Decimal("12.50"), "n": 3})
    assert stored == {"kind": "claim", "at": "2026-03-02T09:30:00.000000Z", "amount": "12.50", "n": 3}
    assert type(stored["kind"]) is str


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))])))
def test_the_canonical_time_is_strftimes_spelling(at: datetime) -> None:
    """The fast spelling is the one the chains were hashed with (years before 1000 take strftime itself)."""
    assert canonical_time(at) == at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_flat_values = (
    st.text()
    | st.booleans()
    | st.none()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.integers()  # beyond 64 bits: json.dumps spells them
    | st.floats(allow_nan=False, allow_infinity=False)  # orjson spells some differently: json.dumps does them
    | st.lists(st.integers() | st.text(), max_size=3)
)


@given(
    st.text(),
    st.integers(min_value=1, max_value=10**6),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])),
    st.text(),
    st.text(),
    st.dictionaries(st.text(), _flat_values, max_size=6),
)
def test_the_canonical_text_is_json_dumps_sorted_and_compact_whatever_path_it_takes(
    case: str, sequence: int, at: datetime, actor: str, type_: str, stored: dict
) -> None:
    """The chains already stored were hashed over ``json.dumps``'s text: the orjson path must write the same."""
    import json

    from models.audit import _canonical

    expected = json.dumps(
        {"case": case, "seq": sequence, "at": canonical_time(at), "actor": actor, "type": type_, "data": stored},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert _canonical(case, sequence, at, actor, type_, stored) == expected


def test_control_characters_quotes_and_non_ascii_text_are_spelled_as_json_dumps_spells_them() -> None:
    import json

    from models.audit import _canonical

    tricky = {"k": '\x00\x1f\x7f\b\f\n\r\t"\\/\u2028\u00e9\u5f20\U0001f600', "\u00e9": "z", "Z": "a", "10": 1}
    at = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    text = _canonical("CLM-1", 1, at, "test", "t", tricky)
    assert text == json.dumps(
        {"case": "CLM-1", "seq": 1, "at": canonical_time(at), "actor": "test", "type": "t", "data": tricky},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def test_equal_instants_in_different_zones_share_one_spelling() -> None:
    shanghai = datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    utc = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    assert canonical_time(shanghai) == canonical_time(utc) == "2026-03-02T01:30:00.000000Z"
    assert canonical_time(utc + timedelta(microseconds=1)) == "2026-03-02T01:30:00.000001Z"


def test_the_hour_a_clock_repeats_is_spelled_twice_even_when_remembered() -> None:
    """Two times of one zone that differ only in ``fold`` compare equal but are an hour apart."""
    from zoneinfo import ZoneInfo

    first = datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # clocks go back at 03:00
    second = first.replace(fold=1)
    assert first == second
    assert canonical_time(first) == "2026-10-25T00:30:00.000000Z"
    assert canonical_time(second) == "2026-10-25T01:30:00.000000Z"
    for at in (first.astimezone(UTC), second.astimezone(UTC)):  # UTC times take the remembered path
        assert canonical_time(at) == canonical_time(at.astimezone(UTC)) == at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
