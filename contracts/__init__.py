"""What crosses processes, defined once: Redis names, payloads and the shared vocabularies.

The service (``ari_app``, ``agi``, ``hotline_link``), the sidecar (``sidecar``) and the pure core
(``transfer``) all read these; this package reads nothing of theirs and no library beyond the
standard one (an import contract in ``make test`` keeps it so). The JSON Schemas in ``config/``
describe the same payloads for outside readers; ``tests/test_contracts.py`` holds the two
together.

* ``contracts.names``: every Redis stream, key and consumer group name, with each stream's
  payload field and trim length.
* ``contracts.vocab``: results, modes, triggers, decisions, alert kinds, live event types.
* ``contracts.sip``: the SIP headers a transferred call carries across the trunk.
"""
