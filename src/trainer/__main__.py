"""``python -m trainer``: compose the config, build the objects, fit, test, report.

Overrides are checked before Hydra starts (every job of a multirun), so a bad one costs one line
on stderr, ``error: <key>: <problem>``, and exit status 2. A ``ckpt_path`` inside a run folder
brings that run's overrides along (:mod:`trainer.runs`); ``mode=test`` only evaluates it.
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

from trainer import config, runs

if TYPE_CHECKING:
    from trainer.callbacks.nan_guard import NonFiniteError


def fail(error: Exception) -> None:
    """Print ``error: <key>: <problem>`` and exit with status 2."""
    print(f"error: {error.key}: {error.problem}", file=sys.stderr)
    sys.exit(2)


def check_model_fits_data(cfg: DictConfig) -> None:
    """Build the datamodule (nothing loads yet) and the model, to refuse pairs that don't fit;
    check that ``ckpt_path`` (if set) is a safe checkpoint of this very model, with something
    left to train when fitting. The cheap checks come first."""
    if cfg.mode == "test" and not cfg.get("ckpt_path"):
        raise config.ConfigError("mode", "test evaluates a checkpoint: give it as "
                                 "ckpt_path=<run>/checkpoints/best.ckpt")
    check_devices(cfg.trainer.accelerator)
    from trainer import data, models
    from trainer.callbacks.checkpointing import check_resumable

    datamodule = data.build(config.to_plain(cfg.data), seed=0)
    model = models.build(config.to_plain(cfg.model), datamodule.input_shape,
                         datamodule.num_classes)
    reads_text = getattr(datamodule, "task", "classify") == "next_token"
    if reads_text != hasattr(model, "hidden"):  # a language model (model=gpt) has a body
        raise config.ConfigError("model", f"model={cfg.model.name} does not fit "
                                 f"data={cfg.data.name}: " + (
                                     "a text data set trains a language model (model=gpt)"
                                     if reads_text else
                                     f"{cfg.model.name} is a language model: it needs a text "
                                     "data set (data=shakespeare_char or data=text)"))
    if getattr(model, "task", "classify") == "reconstruct":
        check_monitors_reconstruction(cfg)
    if cfg.get("ckpt_path"):
        checkpoint = check_resumable(cfg.ckpt_path, model)
        if cfg.mode == "fit":
            runs.check_more_to_train(checkpoint, cfg.ckpt_path, cfg.trainer.max_epochs,
                                     cfg.trainer.max_steps)


#: What the reconstruction recipe logs for validation, and which way is better.
RECONSTRUCTION_MONITORS = {"val/loss": "min", "val/psnr": "max"}


def check_monitors_reconstruction(cfg: DictConfig) -> None:
    """An autoencoder logs no accuracy: refuse a checkpoint (or early stopping) that would
    watch for one, or watch the loss the wrong way, with the keys that fix it."""
    for key in ("checkpoint", "early_stopping"):
        watch = cfg.callbacks[key]
        if key == "early_stopping" and not watch.enabled or watch.monitor is None:
            continue  # off, or the recipe's own monitor (val/loss, min)
        mode = watch.mode or ("min" if watch.monitor.endswith("loss") else "max")
        if RECONSTRUCTION_MONITORS.get(watch.monitor) != mode:
            raise config.ConfigError(
                f"callbacks.{key}.monitor", f"model={cfg.model.name} logs val/loss and val/psnr "
                f"(no accuracy), so {watch.monitor} with mode={mode} cannot pick its best "
                f"epoch: set callbacks.{key}.monitor=val/loss callbacks.{key}.mode=min "
                "(experiment=digits_autoencoder does)")


def check_devices(accelerator: str) -> None:
    """Refuse a GPU run where no GPU is visible, with what to run instead."""
    import torch  # not lightning: importing it takes seconds, and this answer should not

    if accelerator in ("gpu", "cuda") and torch.cuda.device_count() == 0:
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
    """One run in Hydra's output folder: fit then test, or (``mode=test``) only test the
    checkpoint; returns the test metrics."""
    import lightning as L
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import MisconfigurationException
    from omegaconf import OmegaConf

    from trainer import callbacks, console, data, loggers
    from trainer.callbacks.checkpointing import AtomicCheckpointIO, RandomState
    from trainer.callbacks.nan_guard import NanGuard, NonFiniteError

    config.validate(cfg)
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    plain = config.to_plain(cfg)
    console.quiet(plain["verbose"])
    # The bar needs a terminal, and either switch turns it off (trainer.enable_progress_bar,
    # callbacks.progress_bar); without it a line per epoch is printed (console.EpochLines).
    terminal = console.on_terminal()
    bar = plain["callbacks"]["progress_bar"] and plain["trainer"]["enable_progress_bar"]
    plain["trainer"]["enable_progress_bar"] = bar and terminal
    if rank_zero_only.rank == 0:  # DDP's other processes share this folder
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(plain))
    # threads and the allocator policy: here, and in every process the Trainer launches
    process_settings = callbacks.ProcessSettings(plain["threads"], plain["keep_freed_memory"])
    process_settings.apply()
    L.seed_everything(plain["seed"], workers=True, verbose=plain["verbose"])

    trainer_options = dict(plain["trainer"])
    accumulate = trainer_options.pop("accumulate_grad_batches")  # the recipe steps, not Lightning
    datamodule = data.build(plain["data"], seed=plain["seed"])
    recipe = recipe_for(plain, datamodule, accumulate)
    watch = plain["callbacks"]["checkpoint"]
    if watch["monitor"] is None:  # the recipe's own best: val/acc for a classifier, ...
        watch["monitor"], watch["mode"] = recipe.monitor
    elif watch["mode"] is None:
        watch["mode"] = "min" if watch["monitor"].endswith("loss") else "max"
    tensorboard = plain["logger"]["name"] == "tensorboard"
    logger = loggers.build(plain["logger"]["name"], run_dir)
    overridden = [runs.override_key(o) for o in hydra_config.overrides.task]
    hparams = callbacks.HParamsSummary(config.key_hyperparameters(plain, overridden))
    testing_only = plain["mode"] == "test"
    if testing_only:
        built = [process_settings, hparams]
    else:
        # Crash-safe, weights-only checkpoints that restore the RNGs too, and a stop at the
        # first NaN/inf before it reaches a checkpoint. RandomState first: it restores the RNGs
        # before any other callback's hook draws.
        built = [process_settings, RandomState(), hparams,
                 *callbacks.build(plain["callbacks"], run_dir, terminal=terminal), NanGuard()]
    try:
        trainer = L.Trainer(**trainer_options, default_root_dir=run_dir, logger=logger,
                            callbacks=built, plugins=[AtomicCheckpointIO()])
    except (MisconfigurationException, TypeError, ValueError) as error:
        # What only Lightning can judge, e.g. more devices than this machine has.
        raise config.ConfigError("trainer", str(error).strip().splitlines()[0]) from error

    if testing_only:
        results = trainer.test(recipe, datamodule=datamodule, ckpt_path=plain["ckpt_path"],
                               verbose=False, weights_only=True)
        summary = {"mode": "test", "tested_weights": plain["ckpt_path"]}
        return report(trainer, results[0] if results else {}, run_dir, summary, tensorboard)
    try:
        trainer.fit(recipe, datamodule=datamodule, ckpt_path=plain["ckpt_path"],
                    weights_only=True)
    except NonFiniteError as error:
        error.last_checkpoint = callbacks.checkpoint_paths(trainer)["last"]
        raise
    saved = callbacks.checkpoint_paths(trainer)
    # None (the final weights) when no checkpoint of that kind was saved
    weights = saved[plain["test_ckpt"]] or saved["last"]
    results = trainer.test(recipe, datamodule=datamodule, ckpt_path=weights, verbose=False,
                           weights_only=True)
    summary = {"mode": "fit", "tested_weights": weights or "final",
               "epochs": trainer.current_epoch, "global_step": trainer.global_step,
               **fit_summary(trainer), "best_checkpoint": saved["best"],
               "last_checkpoint": saved["last"]}
    return report(trainer, results[0] if results else {}, run_dir, summary, tensorboard)


def recipe_for(plain: dict, datamodule, accumulate: int):
    """The recipe for what the data teaches: a classifier's, or (a text datamodule) a
    language model's, which keeps the vocabulary and the sample settings; or for what the model
    learns: an autoencoder's (its ``task`` is "reconstruct") reconstructs the images."""
    options = dict(input_shape=list(datamodule.input_shape),
                   num_classes=datamodule.num_classes, config=plain,
                   accumulate_grad_batches=accumulate)
    if getattr(datamodule, "task", "classify") == "next_token":
        from trainer.language_model import LanguageModelRecipe

        return LanguageModelRecipe(plain["model"], plain["optimizer"], plain["scheduler"],
                                   vocab=list(datamodule.vocab.chars), sample=plain["sample"],
                                   **options)
    from trainer import models

    if getattr(models.MODELS.get(plain["model"]["name"]), "task", "classify") == "reconstruct":
        from trainer.reconstruction import ReconstructionRecipe

        return ReconstructionRecipe(plain["model"], plain["optimizer"], plain["scheduler"],
                                    **options)
    from trainer.recipe import Recipe

    return Recipe(plain["model"], plain["optimizer"], plain["scheduler"], **options)


def fit_summary(trainer) -> dict:
    """The best validation epoch (as the best checkpoint is chosen) with its metrics, and
    whether early stopping ended the fit, at which epoch."""
    from lightning.pytorch.callbacks import EarlyStopping

    from trainer.callbacks import BestEpoch

    best = next((c.best for c in trainer.callbacks if isinstance(c, BestEpoch)), None)
    stopping = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    stopped = stopping is not None and stopping.stopped_epoch > 0
    return {"best": best, "stopped_early": stopped,
            "stopped_at_epoch": stopping.stopped_epoch + 1 if stopped else None}


def report(trainer, test_metrics: dict, run_dir: Path, summary: dict, tensorboard: bool
           ) -> dict[str, float]:
    """Write ``metrics.json`` (the test metrics, then ``summary``); print the best epoch, the
    test metrics, the run folder and how to look at it."""
    from trainer import console

    metrics = {name: float(value) for name, value in sorted(test_metrics.items())}
    if trainer.is_global_zero:
        record = {"test": metrics, **summary}
        (run_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        lines = [""]
        if best := summary.get("best"):
            values = {k: v for k, v in best.items() if k not in ("epoch", "step")}
            lines.append(f"best epoch {best['epoch']}: {console.format_metrics(values)}")
        if summary.get("stopped_early"):
            lines.append(f"stopped early after epoch {summary['stopped_at_epoch']} "
                         "(callbacks.early_stopping)")
        weights = summary["tested_weights"]
        lines.append(f"tested: {Path(weights).name if weights != 'final' else weights} weights")
        width = max((len(name) for name in metrics), default=0)
        lines += [f"{name.ljust(width)}  {value:.4f}" for name, value in metrics.items()]
        lines.append(f"run folder: {run_dir}")
        if tensorboard:
            lines.append(f"tensorboard --logdir {run_dir}")
        print("\n".join(lines))
    return metrics


def diverged(error: NonFiniteError) -> None:
    """Print ``error: training diverged at step N: ...`` and the checkpoint to go back to;
    exit with status 3."""
    last = getattr(error, "last_checkpoint", None)
    kept = f"last good checkpoint: {last}" if last else "no checkpoint was saved before it"
    print(f"error: training diverged at {error}\n{kept}", file=sys.stderr)
    sys.exit(3)


def usage() -> str:
    """``--help``: the config groups with their options (from ``conf/``, the default starred),
    the top-level keys, and where to learn more. Hydra's own help (``--hydra-help``) would
    also list the schemas' internal groups."""
    import dataclasses

    import yaml

    root = config.config_dir()
    defaults = {}
    for entry in yaml.safe_load((root / "config.yaml").read_text()).get("defaults", []):
        if isinstance(entry, dict):
            defaults.update(entry)
    groups = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
    width = max(len(g) for g in groups) + 1
    lines = ["usage: python -m trainer [group=option ...] [key=value ...]",
             "       python -m trainer -m key=a,b ...    (a sweep: one run per value)",
             "", "config groups (the default marked *):"]
    for group in groups:
        options = [f"{o}*" if o == defaults.get(group) else o
                   for o in config.option_names(group)]
        lines.append(f"  {(group + ':').ljust(width)} {', '.join(options)}")
    keys = [f.name for f in dataclasses.fields(config.Config) if f.name not in groups]
    lines += ["", f"top-level keys: {', '.join(keys)}", "",
              "  python -m trainer model=cnn optimizer.lr=0.01 trainer.max_epochs=10",
              "  python -m trainer ckpt_path=<run>/checkpoints/last.ckpt trainer.max_epochs=40",
              "  python -m trainer ckpt_path=<run>/checkpoints/best.ckpt mode=test",
              "  python -m trainer --cfg job          the composed config, every key",
              "  python -m trainer --hydra-help       Hydra's own options",
              "", "Every key is checked against the schemas in src/trainer/config.py; the "
              "README explains each group."]
    return "\n".join(lines)


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
    if args.help:
        print(usage())
        return
    if not (args.hydra_help or args.info or args.shell_completion or args.config_dir
            or args.config_path):
        overrides, taken_over = runs.inherit_overrides(args.overrides, multirun=args.multirun)
        argv = [a for a in argv if a not in args.overrides] + overrides
        try:
            sweeps_here = args.multirun and not any(
                o.startswith("hydra/launcher=") for o in overrides)
            config.check_overrides(
                overrides, multirun=args.multirun, config_name=args.config_name or "config",
                also=check_sweepable_model_fits_data if sweeps_here else check_model_fits_data,
                passthrough=(runs.NothingToDo,))
        except config.ConfigError as error:
            fail(error)
        except runs.NothingToDo as done:
            print(done)
            return
        if taken_over and os.environ.get("LOCAL_RANK", "0") == "0":  # not DDP's re-runs
            print(taken_over)
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
