"""Backpropagation made explicit.

``trainer.functional`` and ``trainer.nn`` mirror ``torch.nn.functional`` and ``torch.nn``;
every op is a ``torch.autograd.Function`` whose backward is written out by hand.
``trainer.explicit()`` runs any PyTorch code with those rules (:mod:`trainer.intercept`).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazily, so that ``import trainer`` (the command line's first step) stays light.
    if name in ("explicit", "ExplicitError"):
        from trainer import intercept

        return getattr(intercept, name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
