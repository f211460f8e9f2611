"""Handlers initialised on trained artifacts with a real ts Context, for calling their methods directly."""

from __future__ import annotations

from pathlib import Path

from ts.context import Context

from loadtest.handler_driver import handler_context


def initialized(handler_class, model_dir: Path, name: str, batch: int = 4, handler_settings: dict | None = None):
    context = handler_context(model_dir, name, batch, handler_settings)
    handler = handler_class()
    handler.initialize(context)
    return handler, context


def statuses(context: Context, count: int) -> list[int]:
    return [context.get_response_status(idx)[0] for idx in range(count)]
