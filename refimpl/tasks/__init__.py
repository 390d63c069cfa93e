"""Small real tasks to run the methods on: `python -m refimpl run METHOD` and `python -m refimpl bench`.

See refimpl/tasks/README.md for the data, the pre-trained backbones and the references.
"""

from __future__ import annotations

from ..core.errors import RefimplError
from ..core.registry import MethodInfo
from .base import Fit, Task, fit
from .clip_digits import CLIPDigits, DigitRegions, DigitSegmentation
from .denoising import Denoising
from .digit_questions import DigitQuestions
from .digits import Digits
from .generation import Generation
from .sentiment import Sentiment
from .video_digits import VideoDigits

TASKS: dict[str, type[Task]] = {
    task.name: task
    for task in (
        Sentiment,
        Generation,
        Digits,
        Denoising,
        VideoDigits,
        DigitQuestions,
        CLIPDigits,
        DigitRegions,
        DigitSegmentation,
    )
}


def task_model_types() -> list[str]:
    return [model_type for task in TASKS.values() for model_type in task.model_types]


def choose_task(method: MethodInfo, model_type: str | None = None, task_name: str | None = None) -> Task:
    """The task a method runs on: the first of its model types that a task trains (in the method's order), unless
    `model_type` or `task_name` say otherwise."""
    if model_type is not None and model_type not in method.model_types:
        raise RefimplError(
            f"method {method.name!r} does not apply to model type {model_type!r} "
            f"(it applies to {', '.join(method.model_types)})"
        )
    candidates = [model_type] if model_type else list(method.model_types)
    if task_name is not None:
        if task_name not in TASKS:
            raise RefimplError(f"unknown task {task_name!r}; known: {', '.join(TASKS)}")
        tasks = [TASKS[task_name]]
    else:
        tasks = list(TASKS.values())
    for candidate in candidates:
        for task in tasks:
            if candidate in task.model_types:
                return task(candidate)
    raise RefimplError(
        f"no task yet for method {method.name!r} on model type(s) {', '.join(candidates)}"
        f"{f' with task {task_name!r}' if task_name else ''}; tasks exist for {', '.join(task_model_types())}"
    )


__all__ = ["TASKS", "Fit", "Task", "choose_task", "fit"]
