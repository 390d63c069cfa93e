"""Shared by several adapter methods: the closed-form count of trained norms and head (as Houlsby's adapter
trains them), and `activate`, which switches the stage or active adapters of methods that declare which
options are `switchable` and implement `set_active`.
"""

from __future__ import annotations

from torch import nn

from ..core.api import state_of, validate_options
from ..core.architectures import block_sublayers
from ..core.errors import RefimplError
from ..core.targeting import task_head_parameters


def norms_and_head_count(model: nn.Module, norms: bool, head: bool) -> int:
    """Parameters `unfreeze_norms_and_head` will unfreeze, read off the unadapted model's layer shapes."""
    norm_count = sum(p.numel() for _, m in block_sublayers(model, "layer_norms") for p in m.parameters())
    head_count = sum(p.numel() for p in task_head_parameters(model))
    return (norm_count if norms else 0) + (head_count if head else 0)


def activate(model: nn.Module, **changes: object) -> None:
    """Change options of an adapted model in place, e.g. `activate(model, active_language="sw")` (MAD-X) or
    `activate(model, train="fusion")` (AdapterFusion); validated, and recorded for `save_adapter`."""
    state = state_of(model)
    switchable = getattr(state.method, "switchable", ())
    if fixed := sorted(set(changes) - set(switchable)):
        raise RefimplError(
            f"{state.method.name}: option {fixed[0]!r} shapes the adapter and cannot be switched; "
            f"switchable: {', '.join(switchable) or 'none'}"
        )
    options = validate_options(state.method, state.options.model_dump() | changes)
    state.method.set_active(model, options)
    state.options = options
