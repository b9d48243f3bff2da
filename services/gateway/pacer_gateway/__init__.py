"""Pacer's REST gateway: the ControlService as JSON over HTTP, described by a generated OpenAPI 3.1 document."""
