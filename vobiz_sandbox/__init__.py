"""A real HTTP server imitating Vobiz's recording APIs (start, stop, list), for tests, demos, benchmarks."""

from recstop.sandbox.client import SandboxClient, SandboxError
from recstop.sandbox.server import SandboxServer, serve

__all__ = ["SandboxClient", "SandboxError", "SandboxServer", "serve"]
