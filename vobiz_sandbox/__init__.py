"""A real HTTP server imitating the Vobiz "Stop Recording" API, for tests, demos and benchmarks."""

from recstop.sandbox.client import SandboxClient, SandboxError
from recstop.sandbox.server import SandboxServer, serve

__all__ = ["SandboxClient", "SandboxError", "SandboxServer", "serve"]
