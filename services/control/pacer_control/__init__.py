"""Pacer's control plane: the public ControlService, its database and the run ledger."""
