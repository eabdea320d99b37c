"""The runtime on Ray: controller actor, launcher, telemetry store, local cluster."""
