"""Constructs of the Training stack, one per concern."""
