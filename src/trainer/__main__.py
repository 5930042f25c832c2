"""``python -m trainer``: compose the config, build the objects, fit, test, report.

Overrides are checked before Hydra starts (every job of a multirun), so a bad one costs one line
on stderr, ``error: <key>: <problem>``, and exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from trainer import config

if TYPE_CHECKING:
    from trainer.callbacks.nan_guard import NonFiniteError


def fail(error: Exception) -> None:
    """Print ``error: <key>: <problem>`` and exit with status 2."""
    print(f"error: {error.key}: {error.problem}", file=sys.stderr)
    sys.exit(2)


def check_model_fits_data(cfg: DictConfig) -> None:
    """Build the datamodule (nothing loads yet) and the model, to refuse pairs that don't fit;
    check that ``ckpt_path`` (if set) is a safe checkpoint of this very model."""
    from trainer import data, models
    from trainer.callbacks.checkpointing import check_resumable

    datamodule = data.build(config.to_plain(cfg.data), seed=0)
    model = models.build(config.to_plain(cfg.model), datamodule.input_shape,
                         datamodule.num_classes)
    if cfg.get("ckpt_path"):
        check_resumable(cfg.ckpt_path, model)
    check_devices(cfg.trainer.accelerator)


def check_devices(accelerator: str) -> None:
    """Refuse a GPU run where no GPU is visible, with what to run instead."""
    from lightning.fabric.accelerators.cuda import num_cuda_devices  # fork-safe: no CUDA init

    if accelerator in ("gpu", "cuda") and num_cuda_devices() == 0:
        raise config.ConfigError("trainer.accelerator", f"{accelerator}: no CUDA GPU is visible "
                                 "here (trainer=ddp_cpu runs DDP on 2 CPU processes; "
                                 "trainer.accelerator=cpu trains on the CPU)")


#: DDP strategies whose launcher re-runs this command once per extra process.
REEXEC_STRATEGIES = ("ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true")


def check_sweepable_model_fits_data(cfg: DictConfig) -> None:
    """:func:`check_model_fits_data`, for a sweep run here by Hydra's basic launcher: refuse a
    strategy that re-runs the command, since each re-run would start the whole sweep again."""
    if cfg.trainer.strategy in REEXEC_STRATEGIES:
        raise config.ConfigError(
            "trainer.strategy", f"{cfg.trainer.strategy} re-runs the command in each extra "
            "process, which would repeat the whole -m sweep: use trainer.strategy=ddp_spawn in "
            "a sweep, or a cluster launcher (hydra/launcher=submitit_slurm)")
    check_model_fits_data(cfg)


def run(cfg: DictConfig) -> dict[str, float]:
    """One training run in Hydra's output folder; returns the test metrics."""
    import lightning as L
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import MisconfigurationException
    from omegaconf import OmegaConf

    from trainer import callbacks, data, loggers
    from trainer.callbacks.checkpointing import AtomicCheckpointIO, RandomState
    from trainer.callbacks.nan_guard import NanGuard, NonFiniteError
    from trainer.recipe import Recipe

    config.validate(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    plain = config.to_plain(cfg)
    # Either switch turns the bar off: trainer.enable_progress_bar or callbacks.progress_bar.
    plain["callbacks"]["progress_bar"] &= plain["trainer"]["enable_progress_bar"]
    plain["trainer"]["enable_progress_bar"] = plain["callbacks"]["progress_bar"]
    if rank_zero_only.rank == 0:  # DDP's other processes share this folder
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(plain))
    # threads and the allocator policy: here, and in every process the Trainer launches
    process_settings = callbacks.ProcessSettings(plain["threads"], plain["keep_freed_memory"])
    process_settings.apply()
    L.seed_everything(plain["seed"], workers=True)

    datamodule = data.build(plain["data"], seed=plain["seed"])
    recipe = Recipe(plain["model"], plain["optimizer"], plain["scheduler"],
                    input_shape=list(datamodule.input_shape),
                    num_classes=datamodule.num_classes, config=plain)
    tensorboard = plain["logger"]["name"] == "tensorboard"
    logger = loggers.build(plain["logger"]["name"], run_dir)
    # Crash-safe, weights-only checkpoints that restore the RNGs too, and a stop at the first
    # NaN/inf before it reaches a checkpoint. RandomState first: it restores the RNGs before
    # any other callback's hook draws.
    built = [process_settings, RandomState(),
             *callbacks.build(plain["callbacks"], run_dir, hparams=plain), NanGuard()]
    try:
        trainer = L.Trainer(**plain["trainer"], default_root_dir=run_dir, logger=logger,
                            callbacks=built, plugins=[AtomicCheckpointIO()])
    except (MisconfigurationException, TypeError, ValueError) as error:
        # What only Lightning can judge, e.g. more devices than this machine has.
        raise config.ConfigError("trainer", str(error).strip().splitlines()[0]) from error

    try:
        trainer.fit(recipe, datamodule=datamodule, ckpt_path=plain["ckpt_path"],
                    weights_only=True)
    except NonFiniteError as error:
        error.last_checkpoint = callbacks.checkpoint_paths(trainer)["last"]
        raise
    saved = callbacks.checkpoint_paths(trainer)
    weights = saved[plain["test_ckpt"]]  # None (the final weights) when nothing was saved
    results = trainer.test(recipe, datamodule=datamodule, ckpt_path=weights, verbose=False,
                           weights_only=True)
    return report(trainer, results[0] if results else {}, run_dir, weights, saved, tensorboard)


def report(trainer, test_metrics: dict, run_dir: Path, weights: str | None,
           saved: dict[str, str | None], tensorboard: bool) -> dict[str, float]:
    """Write metrics.json; print the test metrics, the run folder and how to look at it."""
    metrics = {name: float(value) for name, value in sorted(test_metrics.items())}
    summary = {
        "test": metrics,
        "tested_weights": weights or "final",
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "best_checkpoint": saved["best"],
        "last_checkpoint": saved["last"],
    }
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        print("\n" + "  ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
        print(f"run folder: {run_dir}")
        if tensorboard:
            print(f"tensorboard --logdir {run_dir}")
    return metrics


def diverged(error: NonFiniteError) -> None:
    """Print ``error: training diverged at step N: ...`` and the checkpoint to go back to;
    exit with status 3."""
    last = getattr(error, "last_checkpoint", None)
    kept = f"last good checkpoint: {last}" if last else "no checkpoint was saved before it"
    print(f"error: training diverged at {error}\n{kept}", file=sys.stderr)
    sys.exit(3)


def hydra_task(cfg: DictConfig) -> None:
    from trainer.callbacks.checkpointing import CheckpointError
    from trainer.callbacks.gradient_check import GradientCheckError
    from trainer.callbacks.nan_guard import NonFiniteError
    from trainer.data import DataError
    from trainer.models import ModelInputError

    try:
        run(cfg)
    except (config.ConfigError, DataError, ModelInputError, CheckpointError) as error:
        fail(error)  # the user can fix these
    except NonFiniteError as error:
        diverged(error)
    except GradientCheckError as error:
        # an explicit rule disagrees with autograd: one line, not a traceback, exit status 4
        print(f"error: {error}", file=sys.stderr)
        sys.exit(4)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry (``trainer ...``, ``python -m trainer ...``): check, then hand to Hydra."""
    import hydra
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(argv)
    if not (args.help or args.hydra_help or args.info or args.shell_completion
            or args.config_dir or args.config_path):
        try:
            sweeps_here = args.multirun and not any(
                o.startswith("hydra/launcher=") for o in args.overrides)
            config.check_overrides(
                args.overrides, multirun=args.multirun, config_name=args.config_name or "config",
                also=check_sweepable_model_fits_data if sweeps_here else check_model_fits_data)
        except config.ConfigError as error:
            fail(error)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    sys.argv = [sys.argv[0], *argv]  # hydra.main reads the command line itself
    try:
        hydra.main(version_base="1.3", config_path=str(config.config_dir()),
                   config_name="config")(hydra_task)()
    except (HydraException, OmegaConfBaseException) as error:
        # What Hydra could not even report (e.g. a bad ${...} in hydra.run.dir): one line too.
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(config.explain(error))


if __name__ == "__main__":
    main()
