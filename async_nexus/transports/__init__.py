"""Transports: boundaries between processes and machines.

Each transport is a package of its own and imports its optional dependency there, so
``import async_nexus`` never needs them:

- :mod:`async_nexus.transports.zmq`: ZeroMQ (``pip install 'async-nexus[zmq]'``), async-nexus
  1.0's converters, receiver and sender, on the codec.
- :mod:`async_nexus.transports.redis`: Redis Streams (``pip install 'async-nexus[redis]'``),
  at-least-once delivery with consumer groups, redelivery, dead letters and request/reply.
"""
