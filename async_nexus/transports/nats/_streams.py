"""Creating streams on purpose, and checking the ones that exist against what is asked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nats.js.errors
from nats.js import api

from ...errors import BadValue
from .._retrying import check_positive
from ._common import (
    Servers,
    check_publish_subject,
    check_stream_name,
    check_subject,
    close_quietly,
    connect,
    logger,
    server_list,
)

_RETENTION = {
    "limits": api.RetentionPolicy.LIMITS,
    "interest": api.RetentionPolicy.INTEREST,
    "workqueue": api.RetentionPolicy.WORK_QUEUE,
}
_STORAGE = {"file": api.StorageType.FILE, "memory": api.StorageType.MEMORY}


class StreamMismatch(BadValue):
    """A stream exists with other settings than :func:`ensure_stream` was asked for.

    Nothing was changed. The message lists each difference.

    :ivar stream: the stream's name.
    :ivar differences: ``{setting: (what the stream has, what was asked)}``.
    """

    def __init__(self, stream: str, differences: dict[str, tuple[Any, Any]]) -> None:
        listed = "; ".join(
            f"{name}: the stream has {have!r}, asked for {want!r}"
            for name, (have, want) in differences.items()
        )
        super().__init__(
            f"stream {stream!r} exists with other settings than asked for ({listed}). Ask for "
            "what it has, or change the stream on purpose (nats stream edit, or delete it and "
            "call ensure_stream again) if its data may go"
        )
        self.stream = stream
        self.differences = differences


async def ensure_stream(
    servers: Servers,
    name: str,
    subjects: str | Sequence[str],
    *,
    replicas: int = 1,
    dead_letter_subject: str | None = None,
    dead_letter_stream: str | None = None,
    retention: str = "limits",
    storage: str = "file",
    max_age: float | None = None,
    duplicate_window: float = 120.0,
    **nats_options: Any,
) -> None:
    """Create the stream ``name`` holding ``subjects``, or check the one that exists.

    With ``dead_letter_subject``, a second stream (``dead_letter_stream``, by default
    ``f"{name}-dead"``) is made or checked too: it holds that subject alone, where
    :class:`JetStreamReceiver` puts the messages it could not deliver. Run it once at
    deployment, or at the start of every program that sends or receives: an existing
    stream with the same settings is left as it is.

    :param servers: a ``nats://`` URL, or a list of the cluster's URLs.
    :param subjects: the subjects (wildcards allowed) whose messages the stream keeps.
    :param replicas: on how many servers each message is stored (1, or 3 for a cluster that
        keeps what it acknowledged through the loss of a server).
    :param retention: ``"limits"`` (keep messages until ``max_age``; every consumer group
        reads them all), ``"interest"`` or ``"workqueue"``.
    :param storage: ``"file"`` or ``"memory"``.
    :param max_age: seconds a message is kept; ``None``: no limit.
    :param duplicate_window: seconds within which a message id seen before is dropped as a
        duplicate: how long a sender's retries are deduplicated.
    :param nats_options: passed to ``nats.connect`` (``user=``, ``tls=``, ...).
    :raises StreamMismatch: (a :class:`~async_nexus.errors.BadValue`) a stream exists with
        other settings; nothing was changed.
    :raises BadValue: a setting that is out of range, or a dead-letter subject that the
        stream's own subjects would take.
    """
    wanted_subjects = [subjects] if isinstance(subjects, str) else list(subjects)
    check_stream_name("name", name)
    if not wanted_subjects:
        raise BadValue("subjects must name at least one subject")
    for subject in wanted_subjects:
        check_subject("a subject", subject)
    check_positive("replicas", replicas, integer=True)
    check_positive("duplicate_window", duplicate_window)
    if max_age is not None:
        check_positive("max_age", max_age)
    if retention not in _RETENTION:
        raise BadValue(f"retention must be one of {sorted(_RETENTION)}, got {retention!r}")
    if storage not in _STORAGE:
        raise BadValue(f"storage must be one of {sorted(_STORAGE)}, got {storage!r}")
    configs = [
        api.StreamConfig(
            name=name,
            subjects=wanted_subjects,
            num_replicas=replicas,
            retention=_RETENTION[retention],
            storage=_STORAGE[storage],
            max_age=max_age,
            duplicate_window=duplicate_window,
        )
    ]
    if dead_letter_subject is not None:
        check_publish_subject("dead_letter_subject", dead_letter_subject)
        for subject in wanted_subjects:
            if _overlaps(subject, dead_letter_subject):
                raise BadValue(
                    f"dead_letter_subject {dead_letter_subject!r} is taken by the stream's own "
                    f"subject {subject!r}: dead letters would be delivered again; pick one outside"
                )
        dead_name = dead_letter_stream if dead_letter_stream is not None else f"{name}-dead"
        check_stream_name("dead_letter_stream", dead_name)
        configs.append(
            api.StreamConfig(
                name=dead_name,
                subjects=[dead_letter_subject],
                num_replicas=replicas,
                retention=api.RetentionPolicy.LIMITS,
                storage=_STORAGE[storage],
                duplicate_window=duplicate_window,
            )
        )
    closing = False
    client = await connect(server_list(servers), f"ensure_stream({name!r})", nats_options, lambda: closing)
    try:
        js = client.jetstream()
        for config in configs:
            await _ensure_one(js, config)
    finally:
        closing = True
        await close_quietly(client)


async def _ensure_one(js: Any, config: api.StreamConfig) -> None:
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        logger.info("created stream %r for %s", config.name, config.subjects)
        return
    differences = _differences(info.config, config)
    if differences:
        raise StreamMismatch(config.name, differences)


def _differences(have: api.StreamConfig, want: api.StreamConfig) -> dict[str, tuple[Any, Any]]:
    found: dict[str, tuple[Any, Any]] = {}
    if sorted(have.subjects or []) != sorted(want.subjects or []):
        found["subjects"] = (have.subjects, want.subjects)
    if (have.num_replicas or 1) != want.num_replicas:
        found["replicas"] = (have.num_replicas, want.num_replicas)
    for setting in ("retention", "storage"):
        have_value, want_value = getattr(have, setting), getattr(want, setting)
        if have_value != want_value:
            found[setting] = (_plain(have_value), _plain(want_value))
    if not _same_seconds(have.max_age, want.max_age):
        found["max_age"] = (have.max_age or None, want.max_age)
    if not _same_seconds(have.duplicate_window, want.duplicate_window):
        found["duplicate_window"] = (have.duplicate_window, want.duplicate_window)
    return found


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def _same_seconds(have: float | None, want: float | None) -> bool:
    # The server keeps durations in nanoseconds; 0 means no limit, as None does here.
    return abs((have or 0.0) - (want or 0.0)) < 1e-6


def _overlaps(pattern: str, subject: str) -> bool:
    """Whether a message published on ``subject`` would match ``pattern``."""
    tokens, wanted = pattern.split("."), subject.split(".")
    for index, token in enumerate(tokens):
        if token == ">":
            return len(wanted) > index
        if index >= len(wanted) or (token != "*" and token != wanted[index]):
            return False
    return len(tokens) == len(wanted)
