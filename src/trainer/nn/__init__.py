"""Explicit twins of ``torch.nn``: ``import trainer.nn as nn`` and build models as usual.

Each layer subclasses its ``torch.nn`` namesake, so arguments, parameter names, initialization
and ``state_dict`` are torch's own; only ``forward`` differs, running the hand-written rules of
:mod:`trainer.functional`. Containers and ``init`` are torch's, re-exported.
"""

from torch.nn import (
    Identity,
    Module,
    ModuleDict,
    ModuleList,
    Parameter,
    ParameterDict,
    ParameterList,
    Sequential,
    init,
)

from . import functional
from . import attention as _attention
from . import loss_more as _loss_more
from . import recurrent as _recurrent
from . import upsampling as _upsampling
from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .activation_more import (
    CELU,
    ELU,
    GLU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LogSigmoid,
    Mish,
    PReLU,
    ReLU6,
    Softplus,
)
from .conv import Conv1d, Conv2d
from .convert import TWINS, ConversionReport, convert, to_torch
from .dropout import Dropout
from .embedding import Embedding
from .flatten import Flatten
from .fused import LinearCrossEntropy
from .linear import Linear
from .loss import CrossEntropyLoss, MSELoss, NLLLoss
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .norm_more import GroupNorm, InstanceNorm1d, InstanceNorm2d, LocalResponseNorm, RMSNorm
from .pool import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from .resampling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    CircularPad1d,
    CircularPad2d,
    ConstantPad1d,
    ConstantPad2d,
    ReflectionPad1d,
    ReflectionPad2d,
    ReplicationPad1d,
    ReplicationPad2d,
    ZeroPad1d,
    ZeroPad2d,
)

from .attention import *  # noqa: E402,F403
from .loss_more import *  # noqa: E402,F403
from .recurrent import *  # noqa: E402,F403
from .upsampling import *  # noqa: E402,F403

__all__ = [
    *_attention.__all__, *_loss_more.__all__, *_recurrent.__all__, *_upsampling.__all__,
    "CELU", "ELU", "GLU", "Hardsigmoid", "Hardswish", "Hardtanh", "LogSigmoid", "Mish",
    "PReLU", "ReLU6", "SELU", "Softplus",
    "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "LocalResponseNorm", "RMSNorm",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "CircularPad1d", "CircularPad2d",
    "ConstantPad1d", "ConstantPad2d", "ReflectionPad1d", "ReflectionPad2d",
    "ReplicationPad1d", "ReplicationPad2d", "ZeroPad1d", "ZeroPad2d",
    "AvgPool1d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "ConversionReport", "Conv1d",
    "Conv2d", "CrossEntropyLoss", "Dropout", "Embedding", "Flatten", "GELU", "Identity",
    "LayerNorm", "LeakyReLU", "Linear", "LinearCrossEntropy", "LogSoftmax", "MSELoss",
    "MaxPool1d", "MaxPool2d",
    "Module", "ModuleDict", "ModuleList", "NLLLoss", "Parameter", "ParameterDict",
    "ParameterList", "ReLU", "Sequential", "SiLU", "Sigmoid", "Softmax", "TWINS", "Tanh",
    "convert", "functional", "init", "to_torch",
]
