"""Where async-nexus 1.0 kept its ZeroMQ classes: the same names, from :mod:`async_nexus.transports.zmq`.

``from async_nexus.zmq import ZmqEventConverter`` keeps working; new code imports from
``async_nexus.transports.zmq``.
"""

from .transports.zmq import (
    ZmqAbstractConverter,
    ZmqEventConverter,
    ZmqEventReceiver,
    ZmqEventSender,
    send_event,
)

__all__ = ["ZmqAbstractConverter", "ZmqEventConverter", "ZmqEventReceiver", "ZmqEventSender", "send_event"]
