"""Escaping and wording for people: no I/O, no domain logic."""
