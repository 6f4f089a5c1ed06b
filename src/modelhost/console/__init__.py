"""The web console at `/console`: endpoints, their charts, logs and scaling, transform
jobs, models and endpoint configs, in a browser, from static files shipped in the package
and the server's own read-only operations."""

from modelhost.console.app import PREFIX, Console, Read

__all__ = ["PREFIX", "Console", "Read"]
