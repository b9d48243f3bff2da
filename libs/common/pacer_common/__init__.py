"""Pacer's shared library: pure scheduling policy and the pieces every service uses."""
