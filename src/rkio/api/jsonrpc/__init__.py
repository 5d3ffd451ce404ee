"""rkllm's functions 1:1 over JSON-RPC 2.0, on every transport, through the engine (docs/rpc.md)."""
