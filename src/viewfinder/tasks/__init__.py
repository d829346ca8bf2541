"""Task registry. Each entry names the module and class, imported only when the task is used,
so ``viewfinder --help`` never imports torch."""

from __future__ import annotations

import importlib

from viewfinder.registry import Registry

TASKS: Registry[str] = Registry("task")
TASKS.register("classify")("viewfinder.tasks.classify:ClassifyTask")
TASKS.register("iqa")("viewfinder.tasks.iqa:QualityTask")
TASKS.register("caption")("viewfinder.tasks.caption:CaptionTask")
TASKS.register("iqa+caption")("viewfinder.tasks.quality_caption:QualityCaptionTask")
TASKS.register("vqa")("viewfinder.tasks.vqa:VQATask")


def get_task_class(name: str) -> type:
    """The ``Task`` subclass registered as ``name`` (unknown names list the choices)."""
    module, _, cls = TASKS.get(name).partition(":")
    return getattr(importlib.import_module(module), cls)
