"""A real ts.context.Context for calling handler methods directly, without the frontend."""

from __future__ import annotations

from pathlib import Path

from ts.context import Context, RequestProcessor


def handler_context(model_dir: Path, name: str, batch: int, handler_settings: dict | None = None) -> Context:
    manifest = {"model": {"modelName": name, "serializedFile": f"{name}.torchscript.pt", "handler": f"{name}.py"}}
    context = Context(name, str(model_dir), manifest, batch_size=batch, gpu=None, mms_version="0.12.0",
                      model_yaml_config={"handler": handler_settings or {}})
    context.request_processor = [RequestProcessor({}) for _ in range(batch)]
    return context


def initialized(handler_class, model_dir: Path, name: str, batch: int = 4, handler_settings: dict | None = None):
    context = handler_context(model_dir, name, batch, handler_settings)
    handler = handler_class()
    handler.initialize(context)
    return handler, context


def statuses(context: Context, count: int) -> list[int]:
    return [context.get_response_status(idx)[0] for idx in range(count)]
