"""Events: built at publish, or read back lazily from their stored JSON."""

from __future__ import annotations

import copy
import pickle
import uuid
from dataclasses import FrozenInstanceError

import orjson
import pytest

from longpoll.event import Event, encode_data, random_event_id


def published(data: object = None) -> Event:
    data = {"text": "hello", "n": [1, 2.5]} if data is None else data
    return Event.create(
        timestamp=1_700_000_000_123,
        category="news ✓",
        data=data,
        data_json=encode_data(data),
        sequence=7,
    )


def test_a_stored_event_decodes_to_the_published_one() -> None:
    event = published()
    stored = Event.stored(event.timestamp, event.category, event.sequence, event.json)
    assert stored.data == {"text": "hello", "n": [1, 2.5]}
    assert stored.id == event.id
    assert isinstance(stored.id, uuid.UUID)
    assert stored == event
    assert hash(stored) == hash(event)
    assert repr(stored) == repr(event)
    assert stored.to_dict() == event.to_dict()


def test_events_differ_by_any_field_but_their_json() -> None:
    event = published()
    assert event.with_sequence(8) != event
    assert event.with_sequence(8).json == event.json
    other = Event(event.timestamp, event.category, "other", event.id, event.sequence, event.json)
    assert other != event
    same = Event(event.timestamp, event.category, event.data, event.id, event.sequence, b"{}")
    assert same == event


def test_events_are_immutable() -> None:
    event = published()
    with pytest.raises(FrozenInstanceError, match="immutable"):
        event.timestamp = 1
    with pytest.raises(AttributeError, match="immutable"):
        del event.category
    assert event.timestamp == 1_700_000_000_123


def test_events_match_by_position_and_keyword() -> None:
    event = published()
    match event:
        case Event(timestamp, "news ✓", {"text": text}, sequence=7):
            assert (timestamp, text) == (1_700_000_000_123, "hello")
        case _:
            pytest.fail("the event did not match its own fields")


def test_events_survive_pickle_and_copy() -> None:
    event = published()
    stored = Event.stored(event.timestamp, event.category, event.sequence, event.json)
    for original in (event, stored):
        for clone in (pickle.loads(pickle.dumps(original)), copy.deepcopy(original)):
            assert clone == event
            assert clone.json == event.json
            assert clone.sequence == event.sequence


def test_events_with_unhashable_data_can_be_set_members() -> None:
    first, second = published({"a": 1}), published({"a": 1})
    assert len({first, second, first}) == 2


def test_random_event_ids_are_distinct_valid_uuid4s_with_the_usual_text() -> None:
    ids = [random_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for made in ids[:2000]:
        assert made.version == 4 and made.variant == uuid.RFC_4122
        assert uuid.UUID(str(made)) == made and hash(uuid.UUID(str(made))) == hash(made)


def test_events_made_without_an_id_get_distinct_uuid4s_read_from_their_json() -> None:
    events = [published({"n": n}) for n in range(2_000)]
    assert len({event.id for event in events}) == len(events)
    # The variant's digit carries two random bits: each of its four values turns up.
    assert {str(event.id)[19] for event in events} == set("89ab")
    for event in events[:200]:
        assert event.id.version == 4 and event.id.variant == uuid.RFC_4122
        assert orjson.loads(event.json)["id"] == str(event.id)
        assert event.id_ascii == str(event.id).encode()
