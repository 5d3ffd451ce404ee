"""rkio as a Model Context Protocol server: the tools (``tools``), their backends, and ``/mcp``."""
