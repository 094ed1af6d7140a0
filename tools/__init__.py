"""Operator commands: run on your machine, shipped nowhere."""
