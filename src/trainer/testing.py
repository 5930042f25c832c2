"""Checks for explicit backward rules: the project's own tests use them, and so can yours.

Each check takes plain callables and tensors, so a Function you write yourself is checked
exactly as the built-in ones are::

    from trainer import testing
    testing.assert_matches_reference(my_op, torch_op, x, w)
    testing.assert_gradcheck(my_op, x.double(), w.double())
    testing.assert_explicit_graph(my_op(x, w))

A failed check raises ``AssertionError``, also under ``python -O``: the checks never rely on
the ``assert`` statement, which ``-O`` strips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "SHAPE_NODES",
    "graph_node_counts",
    "assert_matches_reference",
    "assert_gradcheck",
    "assert_explicit_graph",
    "assert_vmap_matches_loop",
    "assert_compile_matches_eager",
    "assert_autocast_dtype_matches",
    "saved_bytes",
    "backward_op_counts",
    "non_contiguous",
]

Op = Callable[..., object]

_TOLERANCES = {
    torch.float64: dict(rtol=1e-7, atol=1e-7),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
}


def _expect(condition: object, message: str) -> None:
    """``assert condition, message`` that ``python -O`` cannot strip."""
    if not condition:
        raise AssertionError(message)


def _tensors(out) -> list[Tensor]:
    leaves, _ = tree_flatten(out)
    return [t for t in leaves if isinstance(t, Tensor)]


def _diff_outputs(out) -> list[Tensor]:
    return [t for t in _tensors(out) if t.requires_grad]


def non_contiguous(t: Tensor) -> Tensor:
    """The same values in a non-contiguous layout (every dim doubled, then strided)."""
    if t.dim() == 0:
        return t.clone()
    big = torch.zeros([2 * s for s in t.shape], dtype=t.dtype, device=t.device)
    view = big[tuple(slice(None, None, 2) for _ in t.shape)]
    with torch.no_grad():
        view.copy_(t)
    return view.requires_grad_(t.requires_grad)


def _grad_outputs(outs: Sequence[Tensor], seed: int, contiguous: bool) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    gs = []
    for o in outs:
        g = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype).to(o.device)
        gs.append(g if contiguous else non_contiguous(g))
    return gs


def _clone_inputs(inputs: Sequence[object]) -> list[object]:
    return [
        x.detach().clone().requires_grad_(x.requires_grad) if isinstance(x, Tensor) else x
        for x in inputs
    ]


def assert_matches_reference(
    op: Op,
    reference: Op,
    *inputs: object,
    rtol: float | None = None,
    atol: float | None = None,
    contiguous_grad: bool = False,
    check_grads: bool = True,
    equal_nan: bool = False,
) -> None:
    """``op(*inputs)`` equals ``reference(*inputs)`` in value, and so do the gradients of every
    input that requires grad (driven by the same random, by default non-contiguous, grad_output).
    """
    ours_in, ref_in = _clone_inputs(inputs), _clone_inputs(inputs)
    ours, ref = op(*ours_in), reference(*ref_in)
    ours_t, ref_t = _tensors(ours), _tensors(ref)
    _expect(len(ours_t) == len(ref_t), f"{len(ours_t)} outputs, reference has {len(ref_t)}")
    for i, (a, b) in enumerate(zip(ours_t, ref_t)):
        _expect(a.shape == b.shape, f"output {i}: shape {tuple(a.shape)} != {tuple(b.shape)}")
        _expect(a.dtype == b.dtype, f"output {i}: dtype {a.dtype} != {b.dtype}")
        tol = _tol(a.dtype, rtol, atol)
        if a.is_floating_point():
            torch.testing.assert_close(a, b, **tol, equal_nan=equal_nan,
                                       msg=lambda m: f"output {i}: {m}")
        else:
            _expect(torch.equal(a, b), f"output {i}: integer outputs differ")
    if not check_grads:
        return
    diff_ref = _diff_outputs(ref)
    if not diff_ref:
        return
    diff_ours = _diff_outputs(ours)
    _expect(len(diff_ours) == len(diff_ref), "a differentiable output of the reference is not")
    wants = [x for x in ref_in if isinstance(x, Tensor) and x.requires_grad]
    ours_wants = [x for x in ours_in if isinstance(x, Tensor) and x.requires_grad]
    gs = _grad_outputs(diff_ref, seed=0, contiguous=contiguous_grad)
    ref_grads = torch.autograd.grad(diff_ref, wants, gs, allow_unused=True)
    our_grads = torch.autograd.grad(diff_ours, ours_wants, gs, allow_unused=True)
    for i, (a, b) in enumerate(zip(our_grads, ref_grads)):
        if b is None:
            _expect(a is None or not a.any(), f"grad {i}: reference has none, ours is non-zero")
            continue
        _expect(a is not None, f"grad {i}: ours is None, the reference's is not")
        _expect(a.dtype == b.dtype, f"grad {i}: dtype {a.dtype} != {b.dtype}")
        torch.testing.assert_close(a, b, **_tol(a.dtype, rtol, atol), equal_nan=equal_nan,
                                   msg=lambda m: f"grad {i}: {m}")


def _tol(dtype: torch.dtype, rtol: float | None, atol: float | None) -> dict:
    tol = dict(_TOLERANCES.get(dtype, _TOLERANCES[torch.float32]))
    if rtol is not None:
        tol["rtol"] = rtol
    if atol is not None:
        tol["atol"] = atol
    return tol


def assert_gradcheck(op: Op, *inputs: object, gradgrad: bool = True, **kwargs) -> None:
    """Finite differences agree with the analytic first and (by default) second derivatives.

    Inputs that should be checked must be float64 and require grad. ``kwargs`` go to both
    checks; with ``raise_exception=False`` a mismatch still raises ``AssertionError`` here.
    """
    def first_tensor_outputs(*args):
        return tuple(_diff_outputs(op(*args))) or _tensors(op(*args))[0]

    _expect(torch.autograd.gradcheck(first_tensor_outputs, inputs, **kwargs),
            "gradcheck: analytic first derivatives disagree with finite differences")
    if gradgrad:
        _expect(torch.autograd.gradgradcheck(first_tensor_outputs, inputs, **kwargs),
                "gradgradcheck: analytic second derivatives disagree with finite differences")


def _function_class(node) -> type[torch.autograd.Function] | None:
    """The Function whose backward ``node`` runs; None for a C++ node (MulBackward0, ...)."""
    return getattr(type(node), "_forward_cls", None)


def _is_torchs_own(cls: type) -> bool:
    return cls.__module__ == "torch" or cls.__module__.startswith("torch.")


def _is_explicit(node, allow: tuple[type, ...]) -> bool:
    cls = _function_class(node)
    return cls is not None and (not _is_torchs_own(cls) or issubclass(cls, allow))


def _not_explicit(node) -> str:
    """Why ``node`` fails :func:`assert_explicit_graph`, and how to accept it if it can be."""
    name = f"built-in autograd node {type(node).__name__} in the graph"
    cls = _function_class(node)
    if cls is None:
        return (f"{name}: it is not a torch.autograd.Function of yours or of trainer's "
                "(pass allow=(...) to accept a Function class)")
    return (f"{name}: {cls.__module__}.{cls.__qualname__} is torch's own Function, not one of "
            f"yours or of trainer's (pass allow=({cls.__name__},) to accept it)")


def assert_explicit_graph(
    output: object, stop_at: Iterable[Tensor] = (), allow: Iterable[type] = ()
) -> int:
    """Every autograd node between ``output`` and the leaves runs a hand-written backward.

    Walks ``grad_fn.next_functions``. A node passes when it comes from a
    ``torch.autograd.Function`` subclass defined outside torch (its ``__module__`` is neither
    ``torch`` nor ``torch.*``): trainer's own, or yours, whatever module it lives in. Every other
    node fails: torch's C++ nodes, such as the reshape, broadcast or cast that autograd recorded
    around a Function (``ViewBackward0``, ``MulBackward0``, ...), and the Functions torch
    defines in Python (``CheckpointFunction``, say). ``allow`` accepts Function classes (and
    their subclasses) that would fail, torch's own included; ``stop_at`` names non-leaf inputs
    whose own history is not under test. Returns how many nodes were visited.
    """
    allow = tuple(allow)
    stops = {t.grad_fn for t in stop_at if isinstance(t, Tensor) and t.grad_fn is not None}
    roots = [t.grad_fn for t in _diff_outputs(output)]
    _expect(roots, "no differentiable output to walk")
    seen, stack, visited = set(), list(roots), 0
    while stack:
        node = stack.pop()
        if node is None or node in seen or node in stops:
            continue
        seen.add(node)
        visited += 1
        if type(node).__name__ == "AccumulateGrad":
            continue
        if not _is_explicit(node, allow):
            raise AssertionError(_not_explicit(node))
        stack.extend(nxt for nxt, _ in node.next_functions)
    return visited


#: Built-in autograd nodes of shape and data-movement ops, whose backward only moves gradient
#: entries (no arithmetic): allowed beside the rules by :func:`graph_node_counts`' callers.
SHAPE_NODES = frozenset({
    "ViewBackward0", "UnsafeViewBackward0", "TransposeBackward0", "TBackward0",
    "PermuteBackward0", "ExpandBackward0", "SqueezeBackward0", "SqueezeBackward1",
    "SqueezeBackward2", "UnsqueezeBackward0", "SelectBackward0", "SliceBackward0",
    "CloneBackward0", "ToCopyBackward0", "CatBackward0", "StackBackward0", "IndexBackward0",
    "UnbindBackward0", "SplitBackward0", "SplitWithSizesBackward0", "ReshapeAliasBackward0",
    "AsStridedBackward0", "AliasBackward0", "NarrowBackward0", "RepeatBackward0",
    "MovedimBackward0", "UnfoldBackward0", "FlipBackward0", "ViewAsRealBackward0",
    "CopyBackwards",  # x.copy_(y): y's gradient passes through, x's old value gets none
    # an in-place op on a view (a rule with mark_dirty, or copy_): autograd runs the
    # op's own backward node on the view's slice of g and passes the rest through
    "CopySlices",
})


def graph_node_counts(output: object) -> dict[str, dict[str, int]]:
    """The autograd nodes behind ``output``, by kind: ``{"explicit": {...}, "shape": {...},
    "builtin": {...}}``, each mapping a node's class name to its count. explicit: a
    ``torch.autograd.Function`` of the project's or of yours; shape: a built-in node of
    :data:`SHAPE_NODES`; builtin: any other built-in node, a computation autograd
    differentiates by itself. Leaves (``AccumulateGrad``) are not counted."""
    counts: dict[str, dict[str, int]] = {"explicit": {}, "shape": {}, "builtin": {}}
    seen, stack = set(), [t.grad_fn for t in _diff_outputs(output)]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(nxt for nxt, _ in node.next_functions)
        name = type(node).__name__
        if name == "AccumulateGrad":
            continue
        kind = ("explicit" if _is_explicit(node, ()) else
                "shape" if name in SHAPE_NODES else "builtin")
        counts[kind][name] = counts[kind].get(name, 0) + 1
    return counts


def saved_bytes(fn: Callable[[], object], exclude: Iterable[Tensor] = ()) -> int:
    """Bytes that autograd keeps for backward while ``fn()`` builds its graph.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``; a storage saved twice (or by
    two nodes) counts once, and storages of ``exclude`` (parameters, say) do not count.
    """
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(t: Tensor):
        s = t.untyped_storage()
        if s.data_ptr() not in excluded:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def backward_op_counts(op: Op, *inputs: object) -> dict[str, int]:
    """The aten ops that run during ``op``'s backward, counted by name.

    Lets a test show that ``ctx.needs_input_grad`` is honoured: with fewer inputs requiring
    grad, fewer matmuls (convolutions, reductions…) run.
    """
    out = _diff_outputs(op(*inputs))
    gs = [torch.ones_like(o) for o in out]
    wants = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    counter = _OpCounter()
    with counter:
        torch.autograd.grad(out, wants, gs, allow_unused=True)
    return counter.counts


def assert_vmap_matches_loop(
    loss: Callable[..., Tensor],
    params: Sequence[Tensor],
    batch: Sequence[Tensor],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """Per-sample gradients from ``vmap(grad(loss))`` equal a Python loop over the samples.

    ``loss(*params, *sample)`` must return a scalar; each tensor in ``batch`` has the samples
    along dim 0, and ``loss`` sees one sample with that dim removed.
    """
    from torch.func import grad, vmap

    argnums = tuple(range(len(params)))
    in_dims = (None,) * len(params) + (0,) * len(batch)
    vmapped = vmap(grad(loss, argnums=argnums), in_dims=in_dims)(*params, *batch)
    n = batch[0].shape[0]
    for i in range(n):
        sample = [b[i] for b in batch]
        looped = torch.autograd.grad(
            loss(*params, *sample), params, allow_unused=True, materialize_grads=True
        )
        for j, (v, l) in enumerate(zip(vmapped, looped)):
            torch.testing.assert_close(v[i], l, rtol=rtol, atol=atol,
                                       msg=lambda m: f"sample {i}, param {j}: {m}")


def assert_compile_matches_eager(
    op: Op, *inputs: object, backend: str = "aot_eager", rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """``torch.compile(op, fullgraph=True)`` runs with no graph break, forward and backward,
    and agrees with eager. ``aot_eager`` traces the backward through AOTAutograd as inductor
    would, without inductor's C++ compile time; pass ``backend="inductor"`` for the full path.
    """
    torch._dynamo.reset()
    compiled = torch.compile(op, fullgraph=True, backend=backend)
    assert_matches_reference(compiled, op, *inputs, rtol=rtol, atol=atol)


def assert_autocast_dtype_matches(
    op: Op, reference: Op, *inputs: object, device_type: str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
) -> None:
    """Under ``torch.autocast(device_type, dtype)`` the outputs have native's dtypes, and
    backward runs, giving each input a gradient of that input's own dtype."""
    ours_in, ref_in = _clone_inputs(inputs), _clone_inputs(inputs)
    with torch.autocast(device_type, dtype=dtype):
        ours, ref = op(*ours_in), reference(*ref_in)
    for i, (a, b) in enumerate(zip(_tensors(ours), _tensors(ref))):
        _expect(a.dtype == b.dtype, f"output {i} under autocast: {a.dtype}, native gives {b.dtype}")
    outs = _diff_outputs(ours)
    if outs:
        wants = [x for x in ours_in if isinstance(x, Tensor) and x.requires_grad]
        grads = torch.autograd.grad(outs, wants, [torch.ones_like(o) for o in outs],
                                    allow_unused=True)
        for x, gx in zip(wants, grads):
            if gx is None:
                continue
            _expect(gx.dtype == x.dtype, f"grad dtype {gx.dtype} != input {x.dtype}")
            _expect(torch.isfinite(gx).all(), "non-finite grad under autocast")
