"""`python -m examples.demo`: the seed's flash-sale scenario, live and compressed, on a Pacer of its own.

Starts the control plane, a scheduler and an executor as processes (SQLite in a temporary folder), a local demo
shop whose metrics follow the sale's phases, creates the flash-sale job through the public API with every duration
divided by the compression factor, runs the rule-based agent of `examples/agents/flash_sale_agent.py` against it,
prints a timeline in simulated time and ends with a summary that checks what happened (exit 0 only if all pass).
"""
