"""``trainer.nn.functional`` is :mod:`trainer.functional`, as ``torch.nn.functional`` sits
under ``torch.nn``."""

from trainer.functional import *  # noqa: F403
from trainer.functional import __all__  # noqa: F401
