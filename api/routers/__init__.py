"""One router per resource (FastAPI's "bigger applications" layout)."""

from . import attachments, health, lists, policy, rules, stats, system

__all__ = ["attachments", "health", "lists", "policy", "rules", "stats", "system"]
