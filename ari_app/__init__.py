"""ARI adapter: turns Asterisk events into actions on calls, and actions into ARI requests."""
