"""A real HTTP server imitating the Vobiz "Stop Recording" API, for tests, demos and benchmarks."""

from vobiz_sandbox.client import SandboxClient, SandboxError
from vobiz_sandbox.server import SandboxServer, serve

__all__ = ["SandboxClient", "SandboxError", "SandboxServer", "serve"]
