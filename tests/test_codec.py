"""The wire codec: round-trips, the NamedEvent registry, and refusal of malformed input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_nexus import Event, NamedEvent
from async_nexus.codec import EventCodec, decode_event, encode_event
from async_nexus.errors import DecodeError, NotAnEvent


class Treacle(NamedEvent):
    pass


class Custard(NamedEvent):
    pass


@dataclass
class Point:
    x: int
    y: float
    tags: tuple[str, ...] = ()


@dataclass
class Line:
    start: Point
    end: Point


class FakeModel:
    """Duck-typed like a pydantic model: only ``model_dump`` matters."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[dict[str, Any]] = []

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"name": self.name, "kind": "fake"}


def wire(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": 1,
        "id": 1,
        "type": 2,
        "priority": 0,
        "payload": None,
        "headers": None,
        "named": False,
    }
    obj.update(overrides)
    return obj


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        Event(1001, 99, 0, "TEAPOT!"),
        Event("abc", "sensor.temp", -3, 21.5, {"trace": "t-1", "origin": "ünïcode ✓"}),
        Event(2**62, 0, 7, None, {}),
        Event(0, "", 0, {"a": [1, 2.5, None, True, {"b": ["c", {"d": []}]}], "e": {}}),
        Event(5, 6, 1, [[], [[]], "x" * 1000]),
    ],
)
def test_fields_and_headers_round_trip(event: Event) -> None:
    codec = EventCodec()
    data = codec.encode(event)
    assert isinstance(data, bytes)
    assert codec.decode(data) == event
    assert codec.decode(data.decode("utf-8")) == event
    assert decode_event(encode_event(event)) == event


def test_wire_form_is_the_documented_object() -> None:
    obj = json.loads(encode_event(Event(3, "t", 2, {"k": 1}, {"h": "v"})))
    assert obj == {
        "v": 1,
        "id": 3,
        "type": "t",
        "priority": 2,
        "payload": {"k": 1},
        "headers": {"h": "v"},
        "named": False,
    }


def test_tuples_are_sent_as_lists() -> None:
    assert decode_event(encode_event(Event(1, 1, 0, (1, (2, 3))))).payload == [1, [2, 3]]


def test_dataclass_payload_arrives_as_dict() -> None:
    line = Line(Point(1, 2.0, ("a",)), Point(3, 4.5))
    event = decode_event(encode_event(Event(1, "line", 0, {"line": line})))
    assert event.payload == {
        "line": {"start": {"x": 1, "y": 2.0, "tags": ["a"]}, "end": {"x": 3, "y": 4.5, "tags": []}}
    }


def test_model_dump_payload_uses_json_mode() -> None:
    model = FakeModel("ada")
    event = decode_event(encode_event(Event(1, "m", 0, [model])))
    assert event.payload == [{"name": "ada", "kind": "fake"}]
    assert model.calls == [{"mode": "json"}]


def test_named_event_rebuilt_through_registry() -> None:
    codec = EventCodec(named_events=[Treacle])
    original = Treacle(7, {"sticky": True}, priority=2, headers={"trace": "x"})
    data = codec.encode(original)
    assert json.loads(data)["named"] is True
    assert json.loads(data)["type"] == "Treacle"
    rebuilt = codec.decode(data)
    assert type(rebuilt) is Treacle
    assert rebuilt == original
    assert rebuilt.type == "Treacle"
    assert decode_event(data, named_events=[Treacle]) == original


def test_register_works_as_decorator_and_after_construction() -> None:
    codec = EventCodec()
    assert codec.register(Custard) is Custard
    codec.register(Custard)  # the same class again is fine
    assert codec.decode(codec.encode(Custard(1))) == Custard(1)
    assert dict(codec.named_events) == {"Custard": Custard}
    assert codec.is_registered(Custard) and not codec.is_registered(Treacle)
    assert not codec.is_registered(Event)  # type: ignore[arg-type]


def test_unknown_named_type_is_a_decode_error() -> None:
    data = EventCodec().encode(Treacle(1, "x"))
    with pytest.raises(DecodeError, match=r"'Treacle'.*register it with codec.register\(cls\)") as info:
        EventCodec(named_events=[Custard]).decode(data)
    assert info.value.raw == data


def test_plain_event_with_a_registered_name_stays_plain() -> None:
    codec = EventCodec(named_events=[Treacle])
    event = codec.decode(codec.encode(Event(1, "Treacle", 0, None)))
    assert type(event) is Event


def test_register_refuses_non_named_events() -> None:
    codec = EventCodec()
    with pytest.raises(TypeError, match="Event"):
        codec.register(Event)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        codec.register(int)  # type: ignore[arg-type]


def test_register_refuses_a_second_class_with_the_same_name() -> None:
    first = Treacle

    class Treacle2(NamedEvent):
        pass

    Treacle2.event_type = "Treacle"
    codec = EventCodec(named_events=[first])
    with pytest.raises(ValueError, match="Treacle"):
        codec.register(Treacle2)


# -- encode refusals --------------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        (Opaque(), "Opaque"),
        ({"k": Opaque()}, "Opaque"),
        (b"bytes", "bytes"),
        ({1: "int key"}, "int"),
        ({"a", "set"}, "set"),
        (Point, "type"),
    ],
)
def test_unsupported_payload_is_a_type_error_at_encode(payload: Any, name: str) -> None:
    for codec in (EventCodec(), EventCodec(format="msgpack")):
        with pytest.raises(TypeError, match=name):
            codec.encode(Event(1, 1, 0, payload))


def test_non_finite_float_is_refused_at_encode() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        encode_event(Event(1, 1, 0, [float("nan")]))


def test_bad_fields_are_refused_at_encode() -> None:
    with pytest.raises(TypeError, match="id"):
        encode_event(Event(True, 1))
    with pytest.raises(TypeError, match="type"):
        encode_event(Event(1, 1.5))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="headers"):
        encode_event(Event(1, 1, 0, None, {"k": 1}))  # type: ignore[dict-item]
    with pytest.raises(NotAnEvent):
        encode_event("not an event")  # type: ignore[arg-type]


# -- decode refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "UTF-8"),
        (b"{not json", "JSON"),
        (b"NaN", "JSON"),
        (b"[1, 2]", "object"),
        (b'"str"', "object"),
        (dumps({"v": 1}), "missing"),
        (dumps(wire(v=2)), "version"),
        (dumps(wire(v=True)), "version"),
        (dumps(wire(id=True)), "id"),
        (dumps(wire(id=1.5)), "id"),
        (dumps(wire(type=None)), "type"),
        (dumps(wire(priority="0")), "priority"),
        (dumps(wire(priority=False)), "priority"),
        (dumps(wire(headers=["a"])), "headers"),
        (dumps(wire(headers={"a": 1})), "headers"),
        (dumps(wire(named="yes")), "named"),
        (dumps(wire(named=True, type=5)), "type"),
        (b"[" * 100_000, "nested"),
    ],
)
def test_malformed_input_is_a_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as info:
        EventCodec().decode(data)
    assert isinstance(info.value, ValueError)
    assert info.value.raw == data[:512]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)

wire_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), json_values),
        "id": json_values,
        "type": st.one_of(st.sampled_from(["Treacle", "Custard", "Nope"]), json_values),
        "priority": json_values,
        "payload": json_values,
        "headers": st.one_of(st.dictionaries(st.text(max_size=3), st.text(max_size=3)), json_values),
        "named": st.one_of(st.booleans(), json_values),
    },
)


def _decodes_or_decode_error(codec: EventCodec, data: bytes | str) -> None:
    try:
        event = codec.decode(data)
    except DecodeError:
        return
    assert isinstance(event, Event)
    assert codec.decode(codec.encode(event)) == event


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    codec = EventCodec(named_events=[Treacle])
    _decodes_or_decode_error(codec, data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, wire_like))
def test_random_json_only_ever_raises_decode_error(value: Any) -> None:
    codec = EventCodec(named_events=[Treacle])
    _decodes_or_decode_error(codec, json.dumps(value).encode())
    _decodes_or_decode_error(codec, json.dumps(value))


# -- MessagePack ------------------------------------------------------------------------------


def test_msgpack_round_trip() -> None:
    codec = EventCodec(format="msgpack", named_events=[Treacle])
    for event in (
        Event("a", 1, -2, {"n": [1, 2.5, None, True, "ü"]}, {"trace": "t"}),
        Treacle(9, {"line": Line(Point(1, 2.0), Point(3, 4.0))}, priority=1),
    ):
        data = codec.encode(event)
        assert msgpack.unpackb(data, raw=False)["v"] == 1
        rebuilt = codec.decode(data)
        assert type(rebuilt) is type(event)
        assert rebuilt == codec.decode(codec.encode(rebuilt))
    assert codec.decode(codec.encode(Treacle(1, "x"))) == Treacle(1, "x")


def test_msgpack_refuses_what_json_cannot_carry() -> None:
    codec = EventCodec(format="msgpack")
    for obj, reason in [
        (wire(payload=b"raw bytes"), "bytes"),
        (wire(payload={1: 2}), "key"),
        (wire(payload=msgpack.ExtType(5, b"x")), "extension"),
        ([1, 2], "object"),
    ]:
        with pytest.raises(DecodeError, match=reason):
            codec.decode(msgpack.packb(obj, use_bin_type=True, strict_types=False))
    with pytest.raises(DecodeError, match="MessagePack"):
        codec.decode(b"\xc1")
    with pytest.raises(DecodeError, match="MessagePack"):
        codec.decode(b"\x91" * 5000)
    with pytest.raises(ValueError, match="64 bits"):
        codec.encode(Event(1, 1, 0, 2**70))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_msgpack_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    _decodes_or_decode_error(EventCodec(format="msgpack", named_events=[Treacle]), data)


def test_msgpack_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(ImportError, match=r"pip install 'async-nexus\[msgpack\]'"):
        EventCodec(format="msgpack")
    EventCodec()  # JSON never needs it
