"""Explicit twins of ``torch.nn.functional``: same names, signatures and semantics.

Every op here is a ``torch.autograd.Function`` whose backward is written out as tensor math;
``import trainer.functional as F`` is the whole change a user makes.
"""

from ._util import ShapeError
from .activation import gelu, leaky_relu, relu, sigmoid, silu, tanh
from .attention import scaled_dot_product_attention
from .conv import conv1d, conv2d
from .cross_entropy import cross_entropy
from .dropout import dropout
from .embedding import embedding
from .fused import linear_cross_entropy
from .fused_attention import causal_attention_proj
from .fused_norm import layer_norm_linear, layer_norm_mlp
from .linear import linear
from .loss import mse_loss, nll_loss
from .norm import batch_norm, layer_norm
from .avg_pool import avg_pool1d, avg_pool2d
from .pool import max_pool1d, max_pool2d
from .shape import flatten
from .softmax import log_softmax, softmax

# The families beyond torch.nn.functional: torch's own ops (torch.add, torch.sum, torch.matmul),
# each module listing its ops in __all__.
from . import activation_piecewise as _activation_piecewise
from . import activation_smooth as _activation_smooth
from . import adaptive_pool as _adaptive_pool
from . import einsum as _einsum
from . import matmul as _matmul
from . import norm_more as _norm_more
from . import padding as _padding
from . import arithmetic as _arithmetic
from . import selection as _selection
from . import unary as _unary
from . import extremes as _extremes
from . import reduce as _reduce
from . import recurrent as _recurrent
from . import conv_transpose as _conv_transpose
from . import interpolate as _interpolate
from . import loss_more as _loss_more
from .activation_piecewise import *  # noqa: F403
from .activation_smooth import *  # noqa: F403
from .adaptive_pool import *  # noqa: F403
from .einsum import *  # noqa: F403
from .matmul import *  # noqa: F403
from .norm_more import *  # noqa: F403
from .padding import *  # noqa: F403
from .arithmetic import *  # noqa: F403
from .selection import *  # noqa: F403
from .unary import *  # noqa: F403
from .extremes import *  # noqa: F403
from .reduce import *  # noqa: F403
from .recurrent import *  # noqa: F403
from .conv_transpose import *  # noqa: F403
from .interpolate import *  # noqa: F403
from .loss_more import *  # noqa: F403

__all__ = [
    "ShapeError",
    "avg_pool1d",
    "avg_pool2d",
    "batch_norm",
    "conv1d",
    "conv2d",
    "cross_entropy",
    "dropout",
    "embedding",
    "flatten",
    "gelu",
    "layer_norm",
    "leaky_relu",
    "linear",
    "linear_cross_entropy",
    "causal_attention_proj",
    "layer_norm_linear",
    "layer_norm_mlp",
    "log_softmax",
    "max_pool1d",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "relu",
    "scaled_dot_product_attention",
    "sigmoid",
    "silu",
    "softmax",
    "tanh",
    *_arithmetic.__all__,
    *_unary.__all__,
    *_selection.__all__,
    *_reduce.__all__,
    *_extremes.__all__,
    *_matmul.__all__,
    *_einsum.__all__,
    *_padding.__all__,
    *_adaptive_pool.__all__,
    *_activation_piecewise.__all__,
    *_activation_smooth.__all__,
    *_norm_more.__all__,
    *_recurrent.__all__,
    *_conv_transpose.__all__,
    *_interpolate.__all__,
    *_loss_more.__all__,
]
