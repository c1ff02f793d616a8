"""The private machinery of :class:`~async_nexus.AsyncEventNexus`: its parts.

Nothing outside ``async_nexus`` imports from here; the nexus (:mod:`async_nexus.nexus`)
holds one of each part and delegates to them. See the Architecture page of the docs.
"""
