"""``trainer.explicit()``: run any PyTorch code with the project's hand-written rules.

Inside the block, every call of torch's Python API that the table of rules
(:mod:`trainer.rules`) lists as an entry point of a rule runs that rule instead:
``F.linear``, ``torch.softmax``, ``x.relu()``, ``F.cross_entropy``, whoever calls them, a
Hugging Face model or your own loop. Every other call runs natively, and the report counts
it: as *moved* when it only moves gradient entries (a view, a transpose, an index: see
:data:`SHAPE_OPS`), as a *fallback* when autograd recorded a built-in backward for it. With
``strict=True`` the first fallback raises :class:`ExplicitError`, naming the op and the module
it was called from.

    with trainer.explicit() as report:
        loss = model(x, labels=y).loss
    loss.backward()
    print(report)

Built on PyTorch's own extension point, :class:`torch.overrides.TorchFunctionMode`: no part of
torch is patched. The mode is thread-local (another thread's calls are its own business),
nests, and leaves nothing behind when the block raises. Calls made while a rule runs (its
forward's native kernel, its backward's tensor math) and everything inside an autograd
backward pass are not intercepted: a rule is never applied to its own insides. This module
holds no math: each rule's lives in :mod:`trainer.functional`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode

from trainer import rules
from trainer.functional import _util

#: Ops whose backward only moves gradient entries (no arithmetic): they stay on built-in
#: autograd and are counted apart, as "moved".
SHAPE_OPS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "transpose", "transpose_", "t", "permute",
    "expand", "expand_as", "contiguous", "__getitem__", "select", "narrow", "slice",
    "unsqueeze", "squeeze", "unflatten", "split", "split_with_sizes", "chunk", "unbind", "cat",
    "concat", "concatenate", "stack", "movedim", "moveaxis", "swapaxes", "swapdims", "repeat",
    "tile", "flip", "roll", "to", "type", "float", "double", "half", "bfloat16", "clone",
    "as_strided", "index_select", "gather", "take_along_dim", "masked_select", "tril", "triu",
    "diagonal", "copy_", "flatten",
})


#: Calls that start a backward pass: the rules' backwards run inside, never rerouted.
_AUTOGRAD_ENTRY_POINTS = frozenset({torch.Tensor.backward, torch.autograd.grad,
                                    torch.autograd.backward})


class ExplicitError(RuntimeError):
    """A call with no explicit rule, under ``trainer.explicit(strict=True)``."""


@dataclass
class Report:
    """What ran inside a ``trainer.explicit()`` block: op name -> number of calls."""

    explicit: Counter = field(default_factory=Counter)  # ran a hand-written rule
    moved: Counter = field(default_factory=Counter)  # shape ops, on built-in autograd
    fallback: Counter = field(default_factory=Counter)  # built-in backward, no rule yet

    @property
    def complete(self) -> bool:
        """Whether every gradient-carrying call that did arithmetic ran a rule."""
        return not self.fallback

    def __str__(self) -> str:
        def listing(counts: Counter) -> str:
            return ", ".join(f"{name} x{n}" for name, n in counts.most_common()) or "none"

        return "\n".join([
            f"explicit rules: {listing(self.explicit)}",
            f"moved on built-in autograd (shape ops): {listing(self.moved)}",
            f"fell back to built-in autograd: {listing(self.fallback)}",
        ])


def _entry_points() -> dict[object, tuple[rules.Rule, Callable]]:
    """torch callable -> (the rule that stands for it, the call that runs the rule with that
    callable's arguments), from the table."""
    found = {}
    for rule in rules.RULES:
        for dotted in rule.stands_for:
            found[rules.resolve(dotted)] = (rule, rule.adapters.get(dotted, rule.functional))
    return found


DISPATCH: dict[object, tuple[rules.Rule, Callable]] = _entry_points()


def name_of(func: Callable) -> str:
    """``torch.nn.functional.gelu``, ``torch.softmax``, ``Tensor.add``: how the report names
    a torch callable."""
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    module = getattr(func, "__module__", None)
    if qualname.startswith(("TensorBase.", "Tensor.")):
        return "Tensor." + qualname.split(".", 1)[1]
    if qualname.startswith("_VariableFunctionsClass."):
        return "torch." + qualname.split(".", 1)[1]
    return f"{module}.{qualname}" if module else qualname


def _tensors(values) -> list[torch.Tensor]:
    """The tensors among ``values`` and, one level down, in their lists and tuples: where a
    torch call takes and returns them (pytree's full walk costs more than the call itself)."""
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [v for v in value if isinstance(v, torch.Tensor)]
    return found


def _grad_fns(args: tuple, kwargs: dict) -> dict[int, object]:
    """Each tensor argument's grad_fn, by the tensor's id, before a call."""
    return {id(t): t.grad_fn for t in _tensors((*args, *kwargs.values()))}


def _builtin_nodes(out, before: dict[int, object]) -> bool:
    """Whether ``out`` holds a tensor with a new grad_fn (a fresh tensor, or an input changed
    in place) that is one of autograd's built-in nodes, not a Function of ours or a user's:
    the mark of a built-in backward."""
    for t in _tensors(out if isinstance(out, (list, tuple)) else (out,)):
        if (isinstance(t, torch.Tensor) and t.grad_fn is not None
                and before.get(id(t), None) is not t.grad_fn
                and getattr(type(t.grad_fn), "_forward_cls", None) is None):
            return True
    return False


def module_names(model: torch.nn.Module | None) -> dict[int, str]:
    """id(module) -> its path in ``model`` (the root: its class name)."""
    if model is None:
        return {}
    return {id(m): n or type(m).__name__ for n, m in model.named_modules()}


class _ModulePath:
    """The stack of modules whose forward is running (global forward hooks while a block is
    open), for naming where a fallback was called from."""

    def __init__(self, model: torch.nn.Module | None, names: dict[int, str] | None = None):
        self.names = names if names is not None else module_names(model)
        self.stack: list[str] = []
        self.handles = []

    def open(self) -> None:
        register = torch.nn.modules.module
        self.handles = [register.register_module_forward_pre_hook(self._enter),
                        register.register_module_forward_hook(self._leave)]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.stack = [], []

    def _enter(self, module, args) -> None:
        self.stack.append(self.names.get(id(module), type(module).__name__))

    def _leave(self, module, args, output) -> None:
        if self.stack:
            self.stack.pop()

    def __str__(self) -> str:
        return " > ".join(self.stack) if self.stack else "<top level>"


class ExplicitMode(TorchFunctionMode):
    """The mode behind :func:`explicit`; see the module's docstring."""

    def __init__(self, strict: bool = False, model: torch.nn.Module | None = None,
                 names: dict[int, str] | None = None):
        super().__init__()
        self.strict = strict
        self.report = Report()
        self.where = _ModulePath(model, names)

    def __enter__(self):
        if self.strict:  # the module path serves strict's message only: no hooks otherwise
            self.where.open()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self.where.close()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.compiler.is_compiling():
            return func(*args, **kwargs)  # traced by dynamo: not rerouted (see explicit)
        if (func in _AUTOGRAD_ENTRY_POINTS or _util.inside_rule()
                or torch._C._current_graph_task_id() != -1):
            return func(*args, **kwargs)  # a backward pass, or a rule's own insides
        entry = DISPATCH.get(func)
        if entry is not None and kwargs.get("out") is None:  # out=: the rules make new tensors
            rule, call = entry
            out = call(*args, **{k: v for k, v in kwargs.items() if k != "out"})
            if out is not NotImplemented:
                self.report.explicit[rule.name] += 1
                return out
        before = _grad_fns(args, kwargs)
        out = func(*args, **kwargs)
        if torch.is_grad_enabled() and _builtin_nodes(out, before):
            name = name_of(func)
            if getattr(func, "__name__", "") in SHAPE_OPS:
                self.report.moved[name] += 1
            else:
                self.report.fallback[name] += 1
                if self.strict:
                    raise ExplicitError(f"trainer.explicit(strict=True): {name} has no explicit "
                                        f"rule (called in {self.where})")
        return out


class explicit:  # noqa: N801 - a context manager and decorator, used like a function
    """``with trainer.explicit() as report:`` (or ``@trainer.explicit()``): run the block with
    the explicit rules; ``report`` (a :class:`Report`) counts what ran how.

    Calls of :mod:`trainer.functional` and :mod:`trainer.nn` are explicit already: they run
    their rules directly and the report does not count them. Code that torch.compile traces
    is not rerouted (dynamo sees torch's own ops): compile a model built from
    :mod:`trainer.nn`, or converted to it, for a compiled explicit run.

    Args:
        strict: raise :class:`ExplicitError` at the first call that falls back to a built-in
            backward, naming the op and the module it was called from.
        model: names modules in that message by their path in ``model`` (``h.0.attn``)
            rather than their class.
    """

    def __init__(self, strict: bool = False, model: torch.nn.Module | None = None):
        self.strict, self.model = strict, model
        self._modes: list[ExplicitMode] = []
        self.report = Report()

    def __enter__(self) -> Report:
        mode = ExplicitMode(self.strict, self.model)
        mode.report = self.report
        self._modes.append(mode)
        mode.__enter__()
        return self.report

    def __exit__(self, *exc) -> None:
        self._modes.pop().__exit__(*exc)

    def __call__(self, fn: Callable) -> Callable:
        import functools

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)

        return wrapped


__all__ = ["DISPATCH", "SHAPE_OPS", "ExplicitError", "ExplicitMode", "Report", "explicit",
           "name_of"]
