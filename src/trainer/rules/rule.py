"""A row of the table of rules (:mod:`trainer.rules`), and how a row names torch's objects."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer import functional as F
from trainer.rules.examples import Example


@dataclass(frozen=True)
class Rule:
    """One explicit op."""

    name: str  # as in trainer.functional (and torch.nn.functional)
    function: type[torch.autograd.Function]  # whose backward is the rule
    stands_for: tuple[str, ...]  # torch entry points it replaces, dotted
    twins: tuple[str, ...]  # trainer.nn modules that call it, dotted (trainer.nn imports this)
    grads: tuple[str, ...]  # "input: formula", one per differentiable input
    saves: str  # what backward keeps, and why
    examples: Callable[[], list[Example]]  # inputs the standard checks run it on
    reference: Callable | None = None  # torch's own op; None: the first of stands_for
    unsupported: tuple[str, ...] = ()  # "double backward", "vmap": refused by design, and why
    #: entry point (one of stands_for) -> a call of the rule taking that entry point's own
    #: arguments, where they differ from the functional's (``Tensor.__rsub__``, say); it may
    #: return NotImplemented to leave a call it cannot take (an option the rule lacks) to torch
    adapters: Mapping[str, Callable] = field(default_factory=dict)

    def supports(self, feature: str) -> bool:
        """Whether the rule supports ``feature`` ("double backward", "vmap")."""
        return not any(reason.startswith(feature + ":") for reason in self.unsupported)

    @property
    def torch_op(self) -> Callable:
        """What the rule must equal: its reference, or the torch op it stands for."""
        return self.reference or resolve(self.stands_for[0])

    @property
    def functional(self) -> Callable:
        """The op as users call it: ``trainer.functional.<name>``."""
        return getattr(F, self.name)

    @property
    def family(self) -> str:
        """The file of :mod:`trainer.functional` it lives in (activation, conv, ...)."""
        return self.function.__module__.rsplit(".", 1)[-1]

    def where(self) -> str:
        """``src/trainer/functional/activation.py:209``: the Function's source."""
        path = Path(inspect.getsourcefile(self.function))
        line = inspect.getsourcelines(self.function)[1]
        parts = path.parts
        shown = Path(*parts[parts.index("trainer") - 1:]) if "trainer" in parts else path
        return f"{shown}:{line}"


def resolve(dotted: str) -> object:
    """``"torch.nn.functional.gelu"``, ``"torch.Tensor.relu"`` -> the object it names."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute)
        return found
    raise ValueError(f"rules.resolve: nothing importable in {dotted!r}")
