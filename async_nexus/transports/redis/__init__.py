"""Redis Streams transport: events cross processes and machines, at least once.

- :class:`RedisStreamSender` is a handler in the sending nexus. It encodes each event with
  :class:`~async_nexus.codec.EventCodec` and appends it to a stream as one entry
  ``{"event": <encoded event>}``, pipelining ``XADD`` in batches from a bounded buffer.
- :class:`RedisStreamReceiver` is a producer in the receiving nexus. It reads the stream
  through a consumer group (``XREADGROUP``), distributes each event and acknowledges the
  entry (``XACK``) only once the event has been dispatched. Entries left pending by a
  consumer that died are claimed (``XAUTOCLAIM``) and dispatched again; malformed entries,
  and entries delivered too often without being acknowledged, go to a dead-letter stream.

Lost connections are retried with exponential backoff and logged to the
``async_nexus.redis`` logger; nothing a sender accepted is dropped while it waits.
``pip install 'async-nexus[redis]'`` installs redis-py, the only dependency.
"""

from ._common import EVENT_FIELD as _EVENT_FIELD
from ._dead_letters import DeadLetteredEntry, MalformedEntry, StuckEntry, TrimmedEntry, UndeliverableEntry
from ._receiver import RedisStreamReceiver
from ._sender import RedisStreamSender

__all__ = [
    "EVENT_FIELD",
    "DeadLetteredEntry",
    "MalformedEntry",
    "RedisStreamReceiver",
    "RedisStreamSender",
    "StuckEntry",
    "TrimmedEntry",
    "UndeliverableEntry",
]

#: The field of a stream entry that holds the encoded event.
EVENT_FIELD = _EVENT_FIELD
