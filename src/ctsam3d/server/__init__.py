"""Web tool and MONAI Label-compatible server.

>>> from ctsam3d.server import ServerConfig, create_app
>>> app = create_app(ServerConfig(state_dir="state", data_dir="cts"))   # an ASGI app for uvicorn

See docs/server.md for the routes, the page and how to connect 3D Slicer.
"""

from .app import create_app
from .config import ServerConfig, is_loopback

__all__ = ["ServerConfig", "create_app", "is_loopback"]
