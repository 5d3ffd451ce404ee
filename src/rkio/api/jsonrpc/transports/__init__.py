"""Transports frame bytes for the one dispatcher: Unix socket, TCP, UDP, WebSocket and HTTP."""
