"""Agents: definitions, the generation loop, and their command subscribers."""
