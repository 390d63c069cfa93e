"""refimpl: short, tested PyTorch reference implementations of the PEFT methods surveyed in
"Parameter-Efficient Fine-Tuning for Foundation Models" (arXiv 2501.13787), for Hugging Face models.

    import refimpl
    model = refimpl.apply(model, "lora", r=8, alpha=16, target_modules=["query", "value"])
    refimpl.trainable_parameters(model)      # (trainable, total)
    refimpl.merge(model); refimpl.unmerge(model)
    refimpl.save_adapter(model, "adapter/"); refimpl.load_adapter(fresh_base, "adapter/")
"""

from .core.api import (
    apply,
    is_adapted,
    merge,
    prepare,
    remove,
    trainable_parameters,
    training_callback,
    unmerge,
)
from .core.errors import RefimplError
from .core.persistence import load_adapter, save_adapter
from .core.registry import MethodInfo, TaskData, TrainingCallback, get_method, methods
from .planned import planned_methods

__all__ = [
    "MethodInfo",
    "RefimplError",
    "TaskData",
    "TrainingCallback",
    "apply",
    "get_method",
    "is_adapted",
    "load_adapter",
    "merge",
    "methods",
    "planned_methods",
    "prepare",
    "remove",
    "save_adapter",
    "trainable_parameters",
    "training_callback",
    "unmerge",
]
