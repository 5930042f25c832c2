"""Backpropagation made explicit.

``trainer.functional`` and ``trainer.nn`` mirror ``torch.nn.functional`` and ``torch.nn``;
every op is a ``torch.autograd.Function`` whose backward is written out by hand.
"""

__version__ = "0.1.0"
