"""Pacer's executor: performs due HTTP calls under the egress policy and turns each into an outcome."""
