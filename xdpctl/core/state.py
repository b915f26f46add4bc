"""The state database (moved to xdpctl.core.rules.store, which holds every
SQL statement); these names stay importable from here."""

from __future__ import annotations

from .rules.store import SCHEMA, SCHEMA_VERSION, Attachment, State

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Attachment", "State"]
