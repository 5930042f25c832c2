"""Swap the ``torch.nn`` layers of an existing model for their explicit twins."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from trainer import rules

from . import fused

#: torch.nn class -> explicit twin, as the table of rules lists them. Each twin subclasses its
#: torch.nn class and adds no state, so a converted module keeps its parameters, buffers, hooks
#: and state_dict layout.
TWINS: dict[type[torch.nn.Module], type[torch.nn.Module]] = rules.twins()

#: Modules that compute nothing differentiable of their own, so need no twin.
_NOTHING_TO_CONVERT = (
    torch.nn.Sequential,
    torch.nn.ModuleList,
    torch.nn.ModuleDict,
    torch.nn.Identity,
)

#: Modules whose children only hold parameters: their forward reads the children's weights
#: through a functional call and never calls the children, so only the parent is reported.
_CHILDREN_HOLD_PARAMETERS_ONLY = (
    torch.nn.MultiheadAttention,  # F.multi_head_attention_forward reads out_proj.weight/.bias
)


@dataclass
class ConversionReport:
    """What :func:`convert` did: module names (as in ``named_modules``) to class names."""

    converted: dict[str, str] = field(default_factory=dict)
    unconverted: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.unconverted

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s) to explicit twins"]
        if self.unconverted:
            lines.append(f"left {len(self.unconverted)} as they were (built-in autograd):")
            lines += [f"  {name or '<root>'}: {why}" for name, why in self.unconverted.items()]
        return "\n".join(lines)


def _why_not(module: torch.nn.Module) -> str | None:
    """Why a module of a supported class still can't be converted, if it can't."""
    if isinstance(module, torch.nn.modules.conv._ConvNd) and module.padding_mode != "zeros":
        return f"{type(module).__name__} with padding_mode={module.padding_mode!r}"
    return None


def convert(model: torch.nn.Module, *, inplace: bool = False, strict: bool = False
            ) -> tuple[torch.nn.Module, ConversionReport]:
    """Replace every supported ``torch.nn`` layer in ``model`` by its explicit twin.

    The twins hold the very same values (parameters and buffers are carried over as they are),
    so outputs are unchanged and ``state_dict`` moves both ways. Returns ``(model, report)``;
    ``report.unconverted`` names each module left on built-in autograd: a class with no twin, or
    a supported class in a configuration the explicit rule does not cover. With ``strict=True``
    any such module raises ``ValueError`` instead. A child that its parent only keeps parameters
    in (``MultiheadAttention.out_proj``) is never called, so it is neither converted nor listed:
    the parent's entry covers it. ``model`` is deep-copied unless ``inplace``.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"convert: expected a torch.nn.Module, got {type(model).__name__}")
    model = model if inplace else copy.deepcopy(model)
    report = ConversionReport()
    explicit = set(TWINS.values()) | {fused.LinearCrossEntropy}
    parameter_holders: list[str] = []  # name prefixes of children that only hold parameters
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in parameter_holders):
            continue  # never called as a module: the parent's own entry covers it
        if isinstance(module, _CHILDREN_HOLD_PARAMETERS_ONLY):
            parameter_holders.append(f"{name}." if name else "")
        cls = type(module)
        if cls in explicit:
            continue
        twin = TWINS.get(cls)
        reason = _why_not(module) if twin else None
        if twin is not None and reason is None:
            module.__class__ = twin  # a twin adds no state: this is the whole conversion
            report.converted[name] = cls.__name__
        elif twin is not None:
            report.unconverted[name] = reason
        elif not isinstance(module, _NOTHING_TO_CONVERT) and _computes_itself(module):
            report.unconverted[name] = f"{cls.__module__}.{cls.__name__} has no explicit twin"
    if strict and report.unconverted:
        raise ValueError(f"convert(strict=True): {report}")
    return model, report


def to_torch(model: torch.nn.Module) -> torch.nn.Module:
    """The reverse of :func:`convert`: a deep copy whose explicit layers are their ``torch.nn``
    base classes again, so its gradients come from PyTorch's built-in autograd.

    The copy holds the same values and the same ``state_dict``; ``model`` is left untouched.
    Modules with no ``torch.nn`` base (``LinearCrossEntropy``, a model's own classes) stay as
    they are, and whatever ``trainer.functional`` op their ``forward`` calls stays explicit.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"to_torch: expected a torch.nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model)
    bases = {twin: base for base, twin in TWINS.items()}
    for module in model.modules():
        base = bases.get(type(module))
        if base is not None:
            module.__class__ = base  # a twin adds no state: this undoes the whole conversion
    return model


def _computes_itself(module: torch.nn.Module) -> bool:
    """Leaves and modules owning parameters do their own math; plain containers of
    submodules are trusted to only route data (their children are checked on their own)."""
    return not any(True for _ in module.children()) or bool(module._parameters)
