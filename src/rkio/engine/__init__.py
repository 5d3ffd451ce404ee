"""The engine: model registry, memory planner, scheduler (pure), supervisor (asyncio shell), runners."""
