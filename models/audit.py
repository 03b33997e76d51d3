"""The audit log's hash chain, as pure functions.

Each event's hash is ``sha256(prev_hash + "\\n" + canonical(content))`` where the content is the case number,
the sequence, the time (UTC, microseconds), the actor, the type and the data, serialised as JSON with sorted
keys and no insignificant white space. The first event of a case chains from ``GENESIS_HASH`` (64 zeros).
Changing, removing or reordering any event breaks every hash after it, and ``verify_chain`` names the first
broken link. ``next_link`` places a new event on a chain: one at a time or many in a row, the chain is the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from models.tables import AuditCheckpoint

GENESIS_HASH = "0" * 64


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return canonical_time(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} cannot be stored in an event")


_SCALARS = (str, int, float, bool, type(None))


def normalise_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The event data as it will read back from the database: JSON types only (decimals and dates as text).

    Flat data of text keys and scalars (the common case: a step, a percent, a time, a text enum, an amount) is
    converted value by value; anything else takes the JSON round trip, which gives the same result for flat data.
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if type(key) is not str:
            break
        if type(value) in _SCALARS:
            flat[key] = value
        elif type(value) is datetime:
            flat[key] = canonical_time(value)
        elif isinstance(value, str):  # a text enum (a case's kind, channel, priority): its text, as JSON writes it
            flat[key] = str.__str__(value)
        elif type(value) is Decimal:
            flat[key] = str(value)
        else:
            break
    else:
        return flat
    result: dict[str, Any] = json.loads(json.dumps(dict(data), default=_plain, ensure_ascii=False))
    return result


def canonical_time(at: datetime) -> str:
    """UTC, microseconds, a ``Z``: one spelling per instant, whatever the database returns."""
    if at.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    if at.tzinfo is UTC:
        return _utc_spelling(at)
    return _spelling(at)


@lru_cache(maxsize=4096)
def _utc_spelling(at: datetime) -> str:
    """``_spelling`` of a UTC time, remembered: the events appended together mostly share their time (a watcher
    pass writes a thousand at one ``now``). Only UTC times: two equal times of another zone may be an hour
    apart (``fold``, the hour a clock repeats), and a cache keyed on equality would give both one spelling."""
    return _spelling(at)


def _spelling(at: datetime) -> str:
    utc = at.astimezone(UTC)
    if utc.year >= 1000:  # isoformat is the same text, several times faster; strftime does not pad the year
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_content(
    *, case_number: str, sequence: int, at: datetime, actor: str, type: str, data: Mapping[str, Any]
) -> str:
    """The exact text that is hashed for one event."""
    return _canonical(case_number, sequence, at, actor, type, normalise_data(data))


def _canonical(case_number: str, sequence: int, at: datetime, actor: str, type: str, stored: dict[str, Any]) -> str:
    """``canonical_content`` of data already normalised (normalising twice changes nothing; it only costs).

    The text is ``json.dumps`` with sorted keys, compact separators and no ASCII escaping. orjson writes the
    same text for text, booleans, nulls and 64-bit integers (property-tested) several times faster, so flat data
    of those takes it; anything else (floats, whose spelling differs, nested values, larger integers) takes
    ``json.dumps`` itself, as does anything orjson refuses.
    """
    content = {"case": case_number, "seq": sequence, "at": canonical_time(at), "actor": actor, "type": type,
               "data": stored}  # fmt: skip
    if _orjson_spells_it(stored):
        try:
            return orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate in a text: json.dumps writes it as it always did
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_INT64 = (-(2**63), 2**64 - 1)
_SPELLED_ALIKE = (str, bool, type(None))


def _orjson_spells_it(stored: Mapping[str, Any]) -> bool:
    for value in stored.values():
        kind = type(value)
        if kind in _SPELLED_ALIKE:
            continue
        if kind is int and _INT64[0] <= value <= _INT64[1]:
            continue
        return False
    return True


def chain_hash(prev_hash: str, content: str) -> str:
    """SHA-256 (hex) of the previous hash and this event's canonical content."""
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainTip:
    """The last event of a case's chain: what the next event links to. A case without events has ``GENESIS``."""

    sequence: int
    hash: str


GENESIS = ChainTip(0, GENESIS_HASH)


@dataclass(frozen=True)
class NewLink:
    """A new event placed on its case's chain: its sequence, its data as stored, and its hashes."""

    sequence: int
    data: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def tip(self) -> ChainTip:
        """The chain's tip once this event is appended."""
        return ChainTip(self.sequence, self.hash)


def next_link(
    case_number: str, tip: ChainTip, *, at: datetime, actor: str, type: str, data: Mapping[str, Any]
) -> NewLink:
    """The event that follows ``tip`` on a case's chain.

    Args:
        case_number: the case (part of the hashed content).
        tip: the case's last event so far (``GENESIS`` for its first event; for the second of two events
            appended together, the first one's ``NewLink.tip``).
        at: the event's time (aware).
        actor: who did it.
        type: what happened.
        data: the event's values; stored as JSON types (decimals and dates as text).

    Returns:
        The next sequence number, the data as it will read back from the database, ``prev_hash`` (the tip's
        hash) and the event's own hash.
    """
    sequence = tip.sequence + 1
    stored = normalise_data(data)
    content = _canonical(case_number, sequence, at, actor, type, stored)
    return NewLink(sequence, stored, tip.hash, chain_hash(tip.hash, content))


@dataclass(frozen=True)
class ChainLink:
    """What the verifier needs of one stored event."""

    sequence: int
    at: datetime
    actor: str
    type: str
    data: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainBreak:
    """The first link that does not hold, and why."""

    case_number: str
    sequence: int
    reason: str

    def __str__(self) -> str:
        return f"{self.case_number} event #{self.sequence}: {self.reason}"


def verify_chain(case_number: str, links: Iterable[ChainLink]) -> ChainBreak | None:
    """Check one case's events, in sequence order.

    Args:
        case_number: the case the events belong to (part of every hashed content).
        links: the stored events, ordered by sequence.

    Returns:
        None when the chain holds; otherwise the first broken link: a gap or repeat in the sequence, a
        ``prev_hash`` that is not the previous event's hash, or a ``hash`` that does not match the content.
    """
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for link in links:
        if link.sequence != expected_seq:
            return ChainBreak(case_number, link.sequence, f"sequence {link.sequence} where {expected_seq} was expected")
        if link.prev_hash != expected_prev:
            return ChainBreak(case_number, link.sequence, "prev_hash does not match the previous event's hash")
        content = canonical_content(
            case_number=case_number,
            sequence=link.sequence,
            at=link.at,
            actor=link.actor,
            type=link.type,
            data=link.data,
        )
        if chain_hash(link.prev_hash, content) != link.hash:
            return ChainBreak(case_number, link.sequence, "content does not match its hash (altered)")
        expected_prev = link.hash
        expected_seq += 1
    return None


# --- checkpoints: the chains' heads, signed with the desk's key, outside the rows they protect ------------------


def checkpoint_body(*, at: datetime, through_event_id: int, heads: Mapping[str, Any], previous: str) -> bytes:
    """What a checkpoint's signature covers: when, up to which event id, each changed case's head (number ->
    [sequence, hash]) and the signature of the checkpoint before (so none can be dropped from the middle)."""
    return orjson.dumps(
        {"at": canonical_time(at), "through": through_event_id, "heads": dict(heads), "previous": previous},
        option=orjson.OPT_SORT_KEYS,
    )


def sign_checkpoint(key: bytes, body: bytes) -> str:
    """HMAC-SHA256 with the desk's audit key: without the key a rewritten chain cannot be given a new checkpoint."""
    import hmac

    return hmac.new(key, body, hashlib.sha256).hexdigest()


def check_checkpoints(key: bytes, records: Iterable[AuditCheckpoint]) -> tuple[dict[str, dict[int, str]], list[str]]:
    """Verify the checkpoints in id order: each signed with ``key`` and following the one before.

    Returns:
        Every head ever checkpointed (case number -> {sequence: hash}: a later event never hides an earlier head
        that was cut or rewritten) and the problems found, in words.
    """
    import hmac

    heads: dict[str, dict[int, str]] = {}
    problems: list[str] = []
    previous = ""
    for record in records:
        body = checkpoint_body(at=record.at, through_event_id=record.through_event_id, heads=record.heads,
                               previous=record.previous)  # fmt: skip
        if not hmac.compare_digest(sign_checkpoint(key, body), record.signature):
            problems.append(f"checkpoint {record.id}: its signature does not match (altered or forged)")
        if record.previous != previous:
            problems.append(f"checkpoint {record.id} does not follow the one before it (a checkpoint was removed)")
        for number, (sequence, digest) in record.heads.items():
            known = heads.setdefault(number, {})
            first = known.setdefault(int(sequence), str(digest))
            if first != digest:  # an event cannot change: the chain was cut or rewritten, then went on
                problems.append(f"{number}: event #{sequence} in checkpoint {record.id} is not the one checkpointed "
                                "before (the chain was rewritten)")  # fmt: skip
        previous = record.signature
    return heads, problems
