"""Structured-config schemas: one dataclass per Hydra config option, registered in the ConfigStore.

Hydra checks every override against these dataclasses while it composes (unknown keys, wrong
types); :func:`validate` then checks the values (``lr > 0``, ``batch_size >= 1``, known choices)
from the ``check`` kept in each field's metadata. Every problem surfaces as a
:class:`ConfigError` that names the key, which the command line prints as one line.

Each group option's YAML (``conf/<group>/<option>.yaml``) starts from its schema::

    defaults:
      - /schema/model/mlp@_here_
      - _self_
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict

# --------------------------------------------------------------------------------------------
# Errors and value checks
# --------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """A config problem, tied to the dotted key it concerns."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


#: A check takes a value and returns what is wrong with it, or None when it is fine.
Check = Callable[[Any], str | None]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def greater_than(bound: float) -> Check:
    return lambda v: None if v > bound else f"must be > {bound}, got {v}"


def at_least(bound: float) -> Check:
    return lambda v: None if v >= bound else f"must be >= {bound}, got {v}"


def in_range(low: float, high: float, *, high_open: bool = False) -> Check:
    def check(v):
        inside = low <= v < high if high_open else low <= v <= high
        return None if inside else f"must be in [{low}, {high}{')' if high_open else ']'}, got {v}"

    return check


def one_of(*choices: Any) -> Check:
    shown = ", ".join(repr(c) for c in choices)
    return lambda v: None if v in choices else f"must be one of {shown}, got {v!r}"


def each(check: Check) -> Check:
    def check_each(values):
        for i, v in enumerate(values):
            if (problem := check(v)) is not None:
                return f"item {i} {problem}"
        return None

    return check_each


def length(n: int) -> Check:
    return lambda v: None if len(v) == n else f"must have {n} items, got {len(v)}"


def non_empty(values) -> str | None:
    return None if len(values) >= 1 else "must list at least one item"


def all_of(*checks: Check) -> Check:
    def check(v):
        return next((p for c in checks if (p := c(v)) is not None), None)

    return check


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _number_or_bool(v) -> str | None:
    if isinstance(v, bool) or (_is_number(v) and v >= 0):
        return None
    return f"must be true, false or a number >= 0, got {v!r}"


def _batch_limit(v) -> str | None:
    # Lightning reads a float as a fraction of the batches and an int as a count.
    if isinstance(v, float) and 0.0 <= v <= 1.0 or isinstance(v, int) and not isinstance(v, bool) \
            and v >= 0:
        return None
    return f"must be a fraction in [0, 1] or a whole number of batches >= 0, got {v!r}"


def _devices(v) -> str | None:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or v == -1)):
        return None
    if isinstance(v, str) and v.replace(",", "").strip().lstrip("-").isdigit():
        return None
    if isinstance(v, (list, ListConfig)) and all(isinstance(d, int) for d in v):
        return None
    return f"must be 'auto', a count >= 1, -1 (all) or a list of device ids, got {v!r}"


#: Strategies accepted without asking Lightning's registry, whose import takes seconds: a bad
#: value elsewhere in the config is then refused at once, not after that import.
COMMON_STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "single_device")


def _strategy(v) -> str | None:
    if v in COMMON_STRATEGIES:
        return None
    from lightning.pytorch.strategies import StrategyRegistry  # lazily: lightning is slow to load

    known = ["auto", *sorted(StrategyRegistry.available_strategies())]
    if v in known:
        return None
    return f"must be one of {', '.join(known)}, got {v!r}"


def checked(default: Any = MISSING, check: Check | None = None, **kwargs) -> Any:
    """A dataclass field whose value :func:`validate` checks with ``check``."""
    metadata = {"check": check} if check is not None else {}
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


def _named(name: str) -> Any:
    # Each option's name is fixed by its schema; pick another option through its group.
    return checked(name, one_of(name))


# --------------------------------------------------------------------------------------------
# model/
# --------------------------------------------------------------------------------------------

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid")
NORMS = (None, "batch", "layer")


@dataclass
class MLPConfig:
    name: str = _named("mlp")
    hidden: list[int] = checked([256, 128], each(at_least(1)))
    activation: str = checked("relu", one_of(*ACTIVATIONS))
    dropout: float = checked(0.1, in_range(0.0, 1.0, high_open=True))
    norm: str | None = checked("batch", one_of(*NORMS))


@dataclass
class CNNConfig:
    name: str = _named("cnn")
    channels: list[int] = checked([32, 64], all_of(non_empty, each(at_least(1))))
    kernel_size: int = checked(3, at_least(1))
    pool_every: int = checked(1, at_least(1))
    hidden: list[int] = checked([128], each(at_least(1)))
    activation: str = checked("relu", one_of(*ACTIVATIONS))
    dropout: float = checked(0.0, in_range(0.0, 1.0, high_open=True))
    norm: str | None = checked("batch", one_of(None, "batch"))


@dataclass
class CNN1dConfig:
    name: str = _named("cnn1d")
    channels: list[int] = checked([64, 64, 64], all_of(non_empty, each(at_least(1))))
    kernel_size: int = checked(5, at_least(1))
    stride: int = checked(1, at_least(1))
    pool_every: int = checked(1, at_least(0))
    hidden: list[int] = checked([], each(at_least(1)))
    activation: str = checked("relu", one_of(*ACTIVATIONS))
    dropout: float = checked(0.0, in_range(0.0, 1.0, high_open=True))
    norm: str | None = checked("batch", one_of(None, "batch"))


@dataclass
class AttentionConfig:
    name: str = _named("attention")
    dim: int = checked(64, at_least(1))
    heads: int = checked(4, at_least(1))
    layers: int = checked(2, at_least(1))
    mlp_ratio: int = checked(2, at_least(1))
    patch: int = checked(4, at_least(1))  # signal samples per token for 1-D inputs
    dropout: float = checked(0.0, in_range(0.0, 1.0, high_open=True))


@dataclass
class RNNConfig:
    name: str = _named("rnn")
    cell: str = checked("gru", one_of("gru", "lstm", "rnn"))
    hidden: int = checked(64, at_least(1))
    layers: int = checked(1, at_least(1))
    bidirectional: bool = False
    dropout: float = checked(0.0, in_range(0.0, 1.0, high_open=True))  # between layers


@dataclass
class AutoencoderConfig:
    """A conv autoencoder for images: strided convs down to a code, back up to the image."""

    name: str = _named("autoencoder")
    channels: list[int] = checked([16, 32], all_of(non_empty, each(at_least(1))))
    latent: int | None = checked(32, optional(at_least(1)))  # None: the last conv map is the code
    up: str = checked("transposed", one_of("transposed", "upsample"))
    upsample_mode: str = checked("nearest", one_of("nearest", "bilinear"))  # for up: upsample
    activation: str = checked("relu", one_of(*ACTIVATIONS))
    norm: str | None = checked("batch", one_of(None, "batch"))
    loss: str = checked("mse", one_of("mse", "bce_with_logits"))


@dataclass
class GPTConfig:
    """nanoGPT's keys; n_head must divide n_embd (checked when the model is built)."""

    name: str = _named("gpt")
    n_layer: int = checked(4, at_least(1))
    n_head: int = checked(4, at_least(1))
    n_embd: int = checked(128, at_least(1))
    block_size: int | None = checked(64, optional(at_least(1)))  # None: the data's length T
    dropout: float = checked(0.0, in_range(0.0, 1.0, high_open=True))
    bias: bool = False  # biases in the Linear and LayerNorm layers


# --------------------------------------------------------------------------------------------
# data/
# --------------------------------------------------------------------------------------------

_fraction = in_range(0.0, 1.0, high_open=True)


@dataclass
class _DataConfig:
    root: str = "data"
    batch_size: int = checked(64, at_least(1))
    eval_batch_size: int = checked(1024, at_least(1))
    val_fraction: float = checked(0.1, _fraction)
    normalize: bool = True
    # Seeds the train/val/test split. Fixed, so runs that differ in `seed` share one test set;
    # null: use the run's seed.
    split_seed: int | None = checked(0, at_least(0))


@dataclass
class DigitsConfig(_DataConfig):
    name: str = _named("digits")
    test_fraction: float = checked(0.2, in_range(0.05, 0.9))


@dataclass
class MNIST1DConfig(_DataConfig):
    name: str = _named("mnist1d")
    num_samples: int = checked(5000, at_least(100))
    train_split: float = checked(0.8, in_range(0.1, 0.95))
    generator_seed: int = 42  # mnist1d's own default, so the set matches the published one


@dataclass
class MoonsConfig(_DataConfig):
    name: str = _named("moons")
    num_samples: int = checked(2000, at_least(20))
    noise: float = checked(0.1, at_least(0.0))
    test_fraction: float = checked(0.2, in_range(0.05, 0.9))


@dataclass
class SpiralsConfig(_DataConfig):
    name: str = _named("spirals")
    num_samples: int = checked(3000, at_least(20))
    classes: int = checked(3, at_least(2))
    turns: float = checked(1.5, greater_than(0.0))
    noise: float = checked(0.05, at_least(0.0))
    test_fraction: float = checked(0.2, in_range(0.05, 0.9))


@dataclass
class _IDXConfig(_DataConfig):
    root: str | None = None  # None: the system copy where one exists, else data/<name>
    download: bool = False
    val_size: int = checked(5000, at_least(1))


@dataclass
class FashionMNISTConfig(_IDXConfig):
    name: str = _named("fashion_mnist")


@dataclass
class MNISTConfig(_IDXConfig):
    name: str = _named("mnist")


@dataclass
class TensorsConfig(_DataConfig):
    """Your own arrays: x and y (optionally x_test/y_test, x_val/y_val) in one file."""

    name: str = _named("tensors")
    path: str = MISSING  # a .npz (np.savez) or .pt (torch.save of a dict of tensors)
    test_fraction: float = checked(0.2, in_range(0.05, 0.9))  # used when the file has no x_test
    num_classes: int | None = checked(None, optional(at_least(2)))  # None: max label + 1


@dataclass
class _TextConfig:
    """Character-level text for a language model (trainer.data.text): random windows."""

    block_size: int = checked(64, at_least(1))  # characters a model reads: input_shape
    batch_size: int = checked(12, at_least(1))
    train_batches: int = checked(250, at_least(1))  # batches per epoch, between validations
    eval_batches: int = checked(20, at_least(1))  # the same batches every validation (and test)
    val_fraction: float = checked(0.1, in_range(0.01, 0.5))  # the text's last part validates
    # Seeds the val/test windows, fixed so runs that differ in `seed` share them; null: `seed`.
    split_seed: int | None = checked(0, at_least(0))


@dataclass
class ShakespeareCharConfig(_TextConfig):
    name: str = _named("shakespeare_char")


@dataclass
class TextConfig(_TextConfig):
    name: str = _named("text")
    path: str = MISSING  # any UTF-8 text file


# --------------------------------------------------------------------------------------------
# optimizer/ and scheduler/
# --------------------------------------------------------------------------------------------


@dataclass
class _OptimizerConfig:
    lr: float = checked(0.01, greater_than(0.0))
    weight_decay: float = checked(0.0, at_least(0.0))
    grad_clip: float = checked(0.0, at_least(0.0))  # clip the gradient norm to this; 0: off


@dataclass
class SGDConfig(_OptimizerConfig):
    name: str = _named("sgd")
    momentum: float = checked(0.0, in_range(0.0, 1.0, high_open=True))
    nesterov: bool = False


@dataclass
class AdamConfig(_OptimizerConfig):
    name: str = _named("adam")
    lr: float = checked(1e-3, greater_than(0.0))
    betas: list[float] = checked([0.9, 0.999], all_of(length(2), each(in_range(0.0, 1.0,
                                                                            high_open=True))))
    eps: float = checked(1e-8, greater_than(0.0))


@dataclass
class AdamWConfig(AdamConfig):
    name: str = _named("adamw")
    lr: float = checked(3e-3, greater_than(0.0))
    weight_decay: float = checked(0.01, at_least(0.0))


@dataclass
class NoSchedulerConfig:
    name: str = _named("none")


@dataclass
class CosineConfig:
    name: str = _named("cosine")
    min_lr_ratio: float = checked(0.0, in_range(0.0, 1.0))  # final lr as a fraction of lr
    warmup_steps: int = checked(0, at_least(0))


@dataclass
class StepConfig:
    name: str = _named("step")
    step_size: int = checked(10, at_least(1))  # in epochs
    gamma: float = checked(0.1, in_range(0.0, 1.0))


# --------------------------------------------------------------------------------------------
# trainer/, logger/, callbacks/
# --------------------------------------------------------------------------------------------

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "64-true", "bf16-true", "16-true",
              "32", "16", "bf16", "64")  # the last four: Lightning's short aliases


@dataclass
class TrainerConfig:
    """Keyword arguments of ``lightning.Trainer``; any Trainer argument not here is refused."""

    accelerator: str = checked("auto", one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"))
    devices: Any = checked("auto", _devices)
    strategy: str = checked("auto", _strategy)  # ddp: trainer=ddp (GPUs), trainer=ddp_cpu
    num_nodes: int = checked(1, at_least(1))
    precision: str = checked("32-true", one_of(*PRECISIONS))
    max_epochs: int = checked(30, lambda v: None if v >= 1 or v == -1 else
                              f"must be >= 1 (or -1 for no limit), got {v}")
    max_steps: int = checked(-1, lambda v: None if v >= 1 or v == -1 else
                             f"must be >= 1 (or -1 for no limit), got {v}")
    fast_dev_run: Any = checked(False, _number_or_bool)
    limit_train_batches: Any = checked(1.0, _batch_limit)
    limit_val_batches: Any = checked(1.0, _batch_limit)
    limit_test_batches: Any = checked(1.0, _batch_limit)
    check_val_every_n_epoch: int | None = checked(1, optional(at_least(1)))
    log_every_n_steps: int = checked(10, at_least(1))
    # Step the optimizer every k batches on the mean of their losses. With manual optimization
    # Lightning does not do this itself: the recipe does, and this key never reaches the Trainer.
    accumulate_grad_batches: int = checked(1, at_least(1))
    num_sanity_val_steps: int = checked(0, at_least(-1))
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    enable_checkpointing: bool = True
    deterministic: Any = checked(False, one_of(True, False, "warn"))
    benchmark: bool | None = None
    detect_anomaly: bool = False
    # The datamodules shard their batches by rank themselves (see trainer.data.batches).
    use_distributed_sampler: bool = False


@dataclass
class TensorBoardConfig:
    name: str = _named("tensorboard")


@dataclass
class CSVConfig:
    name: str = _named("csv")


@dataclass
class CheckpointConfig:
    # None: the recipe's own (a classifier's val/acc, max; a language model's or an
    # autoencoder's val/loss, min)
    monitor: str | None = None
    mode: str | None = checked(None, optional(one_of("min", "max")))
    save_top_k: int = checked(1, at_least(-1))
    save_last: bool = True


@dataclass
class EarlyStoppingConfig:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` validations."""

    enabled: bool = False
    monitor: str = "val/loss"
    mode: str = checked("min", one_of("min", "max"))
    patience: int = checked(5, at_least(1))
    min_delta: float = checked(0.0, at_least(0.0))


@dataclass
class GradientFlowConfig:
    """Per-layer gradient/weight norms, update ratios, dead ReLUs, histograms (TensorBoard)."""

    enabled: bool = True
    every_n_steps: int = checked(25, at_least(1))
    histograms_every_n_steps: int = checked(100, at_least(0))  # 0: no histograms


@dataclass
class GradientCheckConfig:
    """The explicit gradients against built-in autograd on the current batch; stops on error."""

    enabled: bool = True
    every_n_steps: int = checked(200, at_least(1))
    tolerance: float = checked(1e-6, greater_than(0.0))  # largest relative error allowed
    dtype: str = checked("float64", one_of("float64", "float32"))  # float32: tolerance ~1e-3
    samples: int = checked(32, at_least(0))  # the batch's first examples checked; 0: all


@dataclass
class PicturesConfig:
    """Confusion matrix, worst mistakes (images), decision boundary (2-D data) as images."""

    enabled: bool = True
    every_n_epochs: int = checked(5, at_least(1))  # and the last epoch
    worst_examples: int = checked(16, in_range(0, 64))  # 0: no grid of mistakes


@dataclass
class CallbacksConfig:
    """Callbacks by name; each added callback gets a field here and a line in callbacks.build."""

    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    progress_bar: bool = True  # on a terminal; elsewhere (a log file) a line per epoch
    progress_refresh_rate: int = checked(1, at_least(1))
    gradient_flow: GradientFlowConfig = field(default_factory=GradientFlowConfig)
    gradient_check: GradientCheckConfig = field(default_factory=GradientCheckConfig)
    pictures: PicturesConfig = field(default_factory=PicturesConfig)


@dataclass
class SampleConfig:
    """What a language model writes: at each validation (TensorBoard's TEXT tab) and from
    ``python -m trainer.sample``."""

    prompt: str = "\n"
    max_new_tokens: int = checked(200, at_least(0))  # 0: no sample at validation
    temperature: float = checked(0.8, greater_than(0.0))
    top_k: int | None = checked(200, optional(at_least(1)))  # None: the whole vocabulary


# --------------------------------------------------------------------------------------------
# The whole config
# --------------------------------------------------------------------------------------------


@dataclass
class Config:
    # Typed by their group option's own schema, which each option's YAML names first.
    model: Any = MISSING
    data: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    callbacks: Any = MISSING
    seed: int = checked(42, at_least(0))
    threads: int | None = checked(1, at_least(1))  # torch CPU threads; None: torch's default
    keep_freed_memory: bool = True  # glibc malloc keeps freed blocks (trainer.allocator)
    ckpt_path: str | None = None  # resume fitting from this checkpoint (or test it: mode=test)
    mode: str = checked("fit", one_of("fit", "test"))  # test: evaluate ckpt_path, no training
    test_ckpt: str = checked("best", one_of("best", "last"))  # weights the test stage uses
    verbose: bool = False  # Lightning's own messages (devices, model summary, tips) too
    experiment: str | None = None  # set by experiment/<name>.yaml, for the run's name
    sample: SampleConfig = field(default_factory=SampleConfig)  # language models' samples


#: group -> option name -> schema. The keys are the groups' options in conf/.
SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"mlp": MLPConfig, "cnn": CNNConfig, "cnn1d": CNN1dConfig,
              "attention": AttentionConfig, "gpt": GPTConfig, "rnn": RNNConfig,
              "autoencoder": AutoencoderConfig},
    "data": {"digits": DigitsConfig, "mnist1d": MNIST1DConfig, "moons": MoonsConfig,
             "spirals": SpiralsConfig, "fashion_mnist": FashionMNISTConfig, "mnist": MNISTConfig,
             "tensors": TensorsConfig, "shakespeare_char": ShakespeareCharConfig,
             "text": TextConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "adamw": AdamWConfig},
    "scheduler": {"none": NoSchedulerConfig, "cosine": CosineConfig, "step": StepConfig},
    "trainer": {"trainer": TrainerConfig},
    "logger": {"tensorboard": TensorBoardConfig, "csv": CSVConfig},
    "callbacks": {"callbacks": CallbacksConfig},
}


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore: ``config_schema`` and ``schema/<group>/<name>``."""
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    for group, options in SCHEMAS.items():
        for name, schema in options.items():
            store.store(group=f"schema/{group}", name=name, node=schema)


register_schemas()


# --------------------------------------------------------------------------------------------
# Where the configs live
# --------------------------------------------------------------------------------------------


def config_dir() -> Path:
    """The Hydra config folder: ``trainer/conf`` inside a built wheel, else ``<repo>/conf``.

    ``TRAINER_CONFIG_DIR`` points elsewhere when set.
    """
    if override := os.environ.get("TRAINER_CONFIG_DIR"):
        return Path(override).resolve()
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no Hydra configs found: looked for {package / 'conf'} (installed wheel) and "
        f"{package.parent.parent / 'conf'} (source checkout); set TRAINER_CONFIG_DIR"
    )


# --------------------------------------------------------------------------------------------
# Value checks over a composed config
# --------------------------------------------------------------------------------------------


def validate(cfg: DictConfig) -> None:
    """Check every value against its schema's field checks; raise :class:`ConfigError`."""
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        key = sorted(missing)[0]
        raise ConfigError(key, "is required but has no value")
    _validate_node(cfg, prefix="")


def _validate_node(node: DictConfig, prefix: str) -> None:
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return
    known = {spec.name for spec in dataclasses.fields(schema)}
    # `+key=value` opens the struct flag, so added keys get past composition: refuse them here.
    for name in node.keys():
        if name not in known:
            raise ConfigError(f"{prefix}{name}", f"unknown key (known: {', '.join(sorted(known))})")
    for spec in dataclasses.fields(schema):
        value = node[spec.name]
        key = f"{prefix}{spec.name}"
        if isinstance(value, DictConfig):
            _validate_node(value, prefix=f"{key}.")
            continue
        check = spec.metadata.get("check")
        if check is None or value is None:  # OmegaConf lets None only into Optional fields
            continue
        plain = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
        try:
            problem = check(plain)
        except TypeError:
            problem = f"has the wrong type: {plain!r}"
        if problem is not None:
            raise ConfigError(key, problem)


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config as plain dicts and lists (safe for ``torch.load(weights_only=True)``)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


# --------------------------------------------------------------------------------------------
# Composition errors in one line
# --------------------------------------------------------------------------------------------


def explain(error: BaseException) -> ConfigError:
    """Turn what Hydra or OmegaConf raised while composing into a :class:`ConfigError`."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, ConfigError):
        return error
    if isinstance(getattr(error, "key", None), str) and isinstance(getattr(error, "problem", None),
                                                                   str):
        return ConfigError(error.key, error.problem)
    if isinstance(error, MissingConfigException):
        return _explain_missing_option(error)
    if isinstance(error, OverrideParseException):
        override = getattr(error, "override", None) or str(error).splitlines()[0]
        return ConfigError(str(override).split("=")[0], "cannot parse this override: "
                           + _first_line(str(error)))
    cause = error if isinstance(error, OmegaConfBaseException) else error.__cause__
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or _quoted_key(str(error)) or "config"
        problem = _first_line(getattr(cause, "msg", None) or str(cause))
        if "not in struct" in problem or "Key '" in problem and "not in" in problem:
            problem = "unknown key (check the spelling; `--cfg job` shows the config)"
        return ConfigError(key, _conversion_problem(problem) or problem)
    key = _quoted_key(str(error)) or "config"
    if str(error).startswith("Ambiguous value"):
        return ConfigError(key, "a comma list sweeps several runs: add -m (--multirun), or write "
                                "[a,b] for a list")
    return ConfigError(key, _first_line(str(error)))


def _explain_missing_option(error) -> ConfigError:
    missing = getattr(error, "missing_cfg_file", None) or ""
    options = getattr(error, "options", None)
    group, _, option = str(missing).rpartition("/")
    if group:
        try:
            options = options or option_names(group)
        except FileNotFoundError:
            options = options or []
        choices = ", ".join(sorted(o for o in options if not o.startswith("_")))
        return ConfigError(group, f"unknown option {option!r} (choose from {choices})")
    text = str(error)
    if "Could not find '" in text:
        missing = text.split("Could not find '", 1)[1].split("'", 1)[0]
        group, _, option = missing.rpartition("/")
        if group:
            return ConfigError(group, f"unknown option {option!r}")
    return ConfigError(_quoted_key(text) or "config", _first_line(text))


#: OmegaConf's type names, as the rest of the checks word a type.
_TYPE_WORDS = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false",
               "String": "text"}


def _conversion_problem(problem: str) -> str | None:
    """OmegaConf's "Value 'abc' of type 'str' could not be converted to Integer", worded as
    the other checks are: "must be a whole number, got 'abc'"."""
    import re

    found = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", problem)
    found = found or re.match(r"Value '(.*)' is not a valid (bool)", problem)
    if found is None:
        return None
    value, kind = found.groups()
    kind = "Boolean" if kind == "bool" else kind
    return f"must be {_TYPE_WORDS.get(kind, kind)}, got {value!r}"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "invalid"


def _quoted_key(text: str) -> str | None:
    if "'" in text:
        parts = text.split("'")
        if len(parts) >= 3 and parts[1]:
            return parts[1].split("=")[0]
    return None


def check_overrides(overrides: Sequence[str], *, multirun: bool = False,
                    config_name: str = "config", directory: Path | None = None,
                    also: Callable[[DictConfig], None] | None = None,
                    passthrough: tuple[type[BaseException], ...] = ()) -> int:
    """Compose and validate the config of every job these overrides ask for.

    Raises :class:`ConfigError` on the first problem; returns the number of jobs checked.
    ``also(cfg)`` runs after :func:`validate` for checks beyond the schemas (it may raise any
    error with ``key`` and ``problem`` attributes). With
    ``multirun`` each sweep (``optimizer.lr=0.01,0.1``) is expanded as Hydra's basic sweeper
    would; without it a sweep is refused, as Hydra refuses it. Exceptions of the
    ``passthrough`` types raised by ``also`` propagate as they are.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    jobs = [list(overrides)]
    if multirun:
        jobs = _expand_sweeps(overrides)
    # compose() needs a fresh Hydra context; leave none behind for hydra.main to trip on.
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(directory or config_dir()), version_base="1.3",
                                   job_name="trainer"):
            for job in jobs:
                try:
                    cfg = compose(config_name=config_name, overrides=job, return_hydra_config=True)
                    # The run's folder must resolve too (Hydra can't report a bad one briefly).
                    OmegaConf.select(cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir")
                    with open_dict(cfg):
                        del cfg["hydra"]
                    validate(cfg)
                    if also is not None:
                        also(cfg)
                except passthrough:
                    raise
                except Exception as error:  # every composition error becomes one line
                    raise explain(error) from error
    finally:
        GlobalHydra.instance().clear()
    return len(jobs)


def _expand_sweeps(overrides: Sequence[str]) -> list[list[str]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as error:
        raise explain(error) from error
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def option_names(group: str, directory: Path | None = None) -> list[str]:
    """The options of one config group, from the YAML files in ``conf/<group>/``."""
    folder = (directory or config_dir()) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


# --------------------------------------------------------------------------------------------
# The hyperparameters a run is compared by
# --------------------------------------------------------------------------------------------

#: Keys shown in TensorBoard's HPARAMS tab for every run: what a model's result depends on.
#: The whole config stays in the run's ``config.yaml``.
KEY_HYPERPARAMETERS = ("model", "optimizer", "scheduler", "data.name", "data.batch_size",
                       "trainer.max_epochs", "trainer.accumulate_grad_batches", "seed",
                       "experiment")


def key_hyperparameters(plain: dict, overridden: Sequence[str] = ()) -> dict:
    """The part of a resolved config under :data:`KEY_HYPERPARAMETERS` and under the keys the
    command line set (``overridden``, e.g. ``callbacks.gradient_check.samples`` swept by
    ``-m``), nested as in ``plain``."""
    wanted = [*KEY_HYPERPARAMETERS, *(k for k in overridden if not k.startswith("hydra"))]

    def keep(node: Any, prefix: str) -> Any:
        if any(prefix == w or prefix.startswith(w + ".") for w in wanted):
            return node
        if not isinstance(node, dict):
            return None
        kept = {k: keep(v, f"{prefix}.{k}" if prefix else k) for k, v in node.items()}
        return {k: v for k, v in kept.items() if v is not None} or None

    return keep(plain, "") or {}
