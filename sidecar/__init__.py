"""The sidecar: keeps the two platforms' ticket systems in step with the outcome stream and raises
alerts over HTTP (see ``sidecar.sync``, ``sidecar.alerts``)."""
