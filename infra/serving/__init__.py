"""Constructs of the Serving stack, one per concern."""
