"""Transfer logic: pure state machines (no I/O). Adapters in ari_app/ and agi/ drive them."""
