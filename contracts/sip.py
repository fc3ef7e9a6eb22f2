"""What crosses the trunk between the two centres' PBXs with a transferred call.

The sending app puts these SIP headers on the INVITE to the other PBX; the receiving dialplan
passes them to its app as ``name=value`` Stasis arguments and onto the INVITE to its agent's
phone (``dialplan/extensions.conf.j2``), where a desktop can read them for the screen-pop.
"""

from __future__ import annotations

TRANSFER_ID = "X-Hotline-Transfer-Id"
ORIGIN = "X-Hotline-Origin"          # the platform that transfers (12345 | 110)
MODE = "X-Hotline-Mode"              # contracts.vocab.Mode
CATEGORY = "X-Hotline-Category"      # a matter code of the catalog, when known
EMERGENCY = "X-Hotline-Emergency"    # "1" for an emergency (R4)
# The matter's id (hex); the matter itself is too long and too personal for a header: the
# receiving side reads it by id (contracts.names.MATTER, the sidecar's GET /matters/{id}).
MATTER_ID = "X-Hotline-Matter-Id"
MATTER_ID_PATTERN = "[0-9a-f]{32}"     # what a matter id is (a uuid4 in hex)
# R6, a chained transfer (110 -> 12345 -> provincial 12345): every hop names the chain (the first
# hop's transfer id) and its own place in it (1, 2, ...), so records and tickets link up.
CHAIN_ID = "X-Hotline-Chain-Id"
CHAIN_HOP = "X-Hotline-Chain-Hop"

HEADERS = (TRANSFER_ID, ORIGIN, MODE, CATEGORY, EMERGENCY, MATTER_ID, CHAIN_ID, CHAIN_HOP)
