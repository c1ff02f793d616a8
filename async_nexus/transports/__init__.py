"""Transports: boundaries between processes and machines.

Each transport lives in a module of its own and imports its optional dependency there, so
``import async_nexus`` never needs them:

- :mod:`async_nexus.transports.redis`: Redis Streams (``pip install 'async-nexus[redis]'``),
  at-least-once delivery with consumer groups, redelivery, dead letters and request/reply.
"""
