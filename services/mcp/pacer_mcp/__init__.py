"""Pacer's MCP server: the 17 public actions of the control plane as MCP tools, plus the scheduling rules."""
