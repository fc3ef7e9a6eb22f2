"""FastAGI server for the dialplan (pyst2): transfer keys on Queue()-bridged calls (``key``),
catalog routing (``route``) and harassment screening (``screen``). See ``agi.server``."""
