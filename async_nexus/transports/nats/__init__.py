"""NATS JetStream transport: events cross processes and machines, at least once.

- :func:`ensure_stream` creates a stream (and a dead-letter stream) on purpose, or checks
  that an existing one has the settings asked for.
- :class:`JetStreamSender` is a handler in the sending nexus. It encodes each event with
  :class:`~async_nexus.codec.EventCodec`, publishes it to a subject, and counts it sent
  only once JetStream acknowledged it. Retries carry the same ``Nats-Msg-Id``, so the
  server stores an event once however often it is retried.
- :class:`JetStreamReceiver` is a producer in the receiving nexus. It pulls from a durable
  consumer (its ``group``), distributes each event and acknowledges the message only once
  the event has been handled; what finally failed or is no event is recorded in a
  dead-letter stream before the message is terminated. The answers to requests go back
  through a stream too (:class:`JetStreamSender`'s ``reply_subject``).
- ``wire="raw"``, on either side, speaks with other NATS programs (plain nats-py,
  FastStream, Go services): the body is the payload as JSON, the headers are NATS headers,
  and a received message's subject is its event's type.

Lost connections and servers restarting are retried with exponential backoff and logged
to the ``async_nexus.nats`` logger. ``pip install 'async-nexus[nats]'`` installs nats-py,
the only dependency.
"""

from ._dead_letters import DeadLetteredMessage, MalformedMessage, StuckMessage, UndeliverableMessage
from ._receiver import JetStreamReceiver
from ._sender import JetStreamSender
from ._streams import StreamMismatch, ensure_stream

__all__ = [
    "DeadLetteredMessage",
    "JetStreamReceiver",
    "JetStreamSender",
    "MalformedMessage",
    "StreamMismatch",
    "StuckMessage",
    "UndeliverableMessage",
    "ensure_stream",
]
