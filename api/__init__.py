"""xdpctl's REST service (FastAPI): a thin layer over xdpctl.core.

    from xdpctl.api.app import create_app, serve      # or: python -m xdpctl.api.app --help
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def __getattr__(name: str):
    # Imported on first use, so that `python -m xdpctl.api.app` runs the module once.
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'xdpctl.api' has no attribute {name!r}")
