"""What Lightning (and the recipe around the model) costs: training samples/second of the app's
LightningModule under ``lightning.Trainer`` against a bare PyTorch loop.

    python -m benchmarks.lightning_tax [--epochs N] [--repeats 1] [--threads T]
                                       [--minimal-module] [override ...]

The config is composed from conf/ exactly as ``python -m trainer`` composes it, with Hydra
overrides from the command line (``data=mnist1d model=cnn1d``, ...). Both sides then use
the same data module (same batches), a model of the same config and seed (identical weights),
the same loss (``trainer.nn.CrossEntropyLoss``), optimizer and learning-rate schedule:

  * lightning: ``trainer.recipe.Recipe`` fitted by a ``lightning.Trainer`` built from the
    config's ``trainer``/``callbacks`` groups, as the app builds it (loggers write to a temporary
    folder), so its per-step metrics, logging, progress bar and hooks are all in the price;
  * bare: ``for x, y in loader: loss(model(x), y).backward(); step; zero_grad`` (+ scheduler).

``--minimal-module`` replaces the recipe with a LightningModule whose step is only forward,
loss, ``manual_backward``, step and zero_grad (no metrics, logging, progress bar, checkpoints
or diagnostics callbacks): Lightning's own share, the ceiling for any recipe on that Trainer.

Only training is timed: from the start of a training epoch to the end of its last batch, so
validation and checkpointing at epoch end stay out on both sides. The two alternate epoch by
epoch within one fit (a callback runs a bare epoch after each Lightning epoch), so a slow
spell of this shared machine hits both; a fit is as long as the run itself (the config's
``trainer.max_epochs``), so the diagnostics that run every n steps, and at step 0, weigh what
they weigh in the run. Each side's first epoch warms up. Throughput is all timed samples over
all timed seconds. Target: ratio >= 0.90.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import harness

TARGET = 0.90


def load_app():
    """The app's pieces, or a clear message that it is not there yet."""
    try:
        import lightning as L
        from lightning.pytorch.callbacks import Callback

        from trainer import callbacks, config, data, loggers, recipe
    except ImportError as e:
        raise SystemExit(
            f"lightning_tax: the Lightning app is not importable yet ({e}). It needs "
            "trainer.recipe.Recipe, trainer.data.build, trainer.callbacks.build and "
            "trainer.config (Hydra configs in conf/), as `python -m trainer` uses them."
        ) from e
    return L, Callback, callbacks, config, data, loggers, recipe


def compose(config, overrides: list[str]) -> dict:
    """The validated, plain config that ``python -m trainer <overrides>`` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config.config_dir()), version_base="1.3",
                                   job_name="lightning_tax"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    config.validate(cfg)
    return config.to_plain(cfg)


def batch_limit(limit, available: int) -> int:
    """Training batches per epoch under ``trainer.limit_train_batches``, as Lightning counts
    them: a float is a fraction of the epoch, an int a number of batches."""
    if isinstance(limit, float):
        return int(available * limit)
    return min(int(limit), available)


def make_epoch_timer(Callback):
    class EpochTimer(Callback):
        """Seconds, samples and steps of each training epoch, up to the end of its last batch,
        and the seconds spent inside the LightningModule's ``training_step`` (see
        :meth:`time_training_step`)."""

        def __init__(self):
            self.epochs: list[Epoch] = []
            self.in_step = 0.0

        def time_training_step(self, module) -> None:
            """Wrap ``module.training_step`` (an instance attribute) to add its duration."""
            step = type(module).training_step.__get__(module)

            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return step(*args, **kwargs)
                finally:
                    self.in_step += time.perf_counter() - start

            module.training_step = timed

        def on_train_epoch_start(self, trainer, pl_module):
            self.start, self.last_end, self.samples, self.steps = time.perf_counter(), None, 0, 0
            self.in_step = 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.samples += len(batch[1])
            self.steps += 1
            self.last_end = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):  # runs after validation: not timed
            if self.last_end is not None:
                self.epochs.append(Epoch(self.last_end - self.start, self.samples, self.steps,
                                         self.in_step))

    return EpochTimer


@dataclass
class Epoch:
    seconds: float
    samples: int
    steps: int
    in_training_step: float = 0.0  # the Lightning side only


def per_step_ms(epochs: list[Epoch], field: str = "seconds") -> float:
    """Mean milliseconds per step over the epochs (every step counted: the diagnostics that
    run every n steps included, as they are in a run's wall time)."""
    return 1e3 * sum(getattr(e, field) for e in epochs) / sum(e.steps for e in epochs)


def main(argv=None) -> None:
    p = harness.parser("Training samples/second: Lightning recipe vs bare PyTorch loop "
                       "(--repeats = fits, each alternating the two loops epoch by epoch)",
                       repeats=1, ab_timing=False)
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per fit (default: the config's trainer.max_epochs)")
    p.add_argument("--minimal-module", action="store_true",
                   help="time a minimal LightningModule instead of the recipe (forward, loss, "
                        "manual_backward, step, zero_grad; no metrics or logging) under a "
                        "Trainer with no logger, callbacks, checkpoints or progress bar: what "
                        "Lightning's loop alone costs")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m trainer")
    args = p.parse_args(argv)
    L, Callback, callbacks, config, data, loggers, recipe = load_app()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")

    plain = compose(config, args.overrides)
    if args.epochs is None:
        args.epochs = plain["trainer"]["max_epochs"]
    if args.epochs < 2:
        raise SystemExit("lightning_tax: --epochs must be >= 2 (the first epoch warms up)")
    harness.setup(args, "Lightning recipe vs bare PyTorch loop: training samples/second",
                  protocol=f"{args.repeats} fit(s) of {args.epochs} epochs; after each "
                  "Lightning epoch, one bare-loop epoch; the first epoch of each side warms "
                  "up; samples/s = all timed samples / all timed seconds")
    print("config:", " ".join(args.overrides) or "(defaults)",
          f"| data={plain['data']['name']} model={plain['model']['name']} "
          f"optimizer={plain['optimizer']['name']} scheduler={plain['scheduler']['name']} "
          f"batch_size={plain['data'].get('batch_size')} precision="
          f"{plain['trainer'].get('precision')}")
    datamodule = data.build(plain["data"], seed=plain["seed"])
    datamodule.setup("fit")

    def new_recipe():
        torch.manual_seed(plain["seed"])
        return recipe.Recipe(plain["model"], plain["optimizer"], plain["scheduler"],
                             input_shape=list(datamodule.input_shape),
                             num_classes=datamodule.num_classes, config=plain)

    class MinimalModule(L.LightningModule):
        """The recipe's model, loss, optimizer and schedule, and nothing else a step does."""

        # the recipe's own optimizer, schedule and stepping interval (they read hparams, trainer)
        configure_optimizers = recipe.Recipe.configure_optimizers
        parameter_groups = recipe.Recipe.parameter_groups
        optimizer_steps = recipe.Recipe.optimizer_steps
        _scheduler_interval = recipe.Recipe._scheduler_interval

        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.save_hyperparameters({"optimizer": plain["optimizer"],
                                       "scheduler": plain["scheduler"],
                                       "accumulate_grad_batches": 1}, logger=False)
            source = new_recipe()  # the same weights as the bare loop's
            self.model, self.loss = source.model, source.loss

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = self.loss(self.model(x), y)
            optimizer = self.optimizers()
            self.manual_backward(loss)
            clip = plain["optimizer"].get("grad_clip", 0.0)
            if clip > 0:  # as the recipe and the bare loop clip
                self.clip_gradients(optimizer, gradient_clip_val=clip,
                                    gradient_clip_algorithm="norm")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if self._scheduler_interval() == "step":
                self.lr_schedulers().step()
            return loss

        def validation_step(self, batch, batch_idx):  # never runs: limit_val_batches=0
            pass

        def on_train_epoch_end(self):
            if self._scheduler_interval() == "epoch":
                self.lr_schedulers().step()

    EpochTimer = make_epoch_timer(Callback)
    workdir = Path(tempfile.mkdtemp(prefix="lightning_tax_"))
    steps_per_epoch = batch_limit(plain["trainer"].get("limit_train_batches", 1.0),
                                  len(datamodule.train_dataloader()))

    def bare_loop():
        """One epoch of the bare loop per call, on its own model, optimizer and schedule."""
        module = new_recipe()
        model, loss_fn = module.model, module.loss
        optimizer = recipe.build_optimizer(model.parameters(), plain["optimizer"])
        clip = plain["optimizer"].get("grad_clip", 0.0)
        sched = plain["scheduler"]
        schedule, interval = None, None
        if sched["name"] == "cosine":  # as configure_optimizers builds it: stepped per step
            factor = recipe.WarmupCosine(args.epochs * steps_per_epoch,
                                         sched.get("warmup_steps", 0),
                                         sched.get("min_lr_ratio", 0.0))
            schedule, interval = torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "step"
        elif sched["name"] == "step":  # per epoch
            schedule = torch.optim.lr_scheduler.StepLR(optimizer, sched["step_size"],
                                                       sched.get("gamma", 0.1))
            interval = "epoch"

        def epoch() -> Epoch:
            model.train()
            start, samples, steps = time.perf_counter(), 0, 0
            for _, (x, y) in zip(range(steps_per_epoch), datamodule.train_dataloader()):
                loss = loss_fn(model(x), y)
                loss.backward()
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if interval == "step":
                    schedule.step()
                samples += len(y)
                steps += 1
            seconds = time.perf_counter() - start
            if interval == "epoch":
                schedule.step()
            return Epoch(seconds, samples, steps)

        return epoch

    class BareEpochs(Callback):
        """After each Lightning training epoch (and its validation), one bare-loop epoch, so
        the two alternate epoch by epoch and a slow spell of the machine hits both."""

        def __init__(self):
            self.epochs: list[Epoch] = []
            self.run_epoch = bare_loop()

        def on_train_epoch_end(self, trainer, pl_module):
            self.epochs.append(self.run_epoch())

    timed: dict[str, list[Epoch]] = {"lightning": [], "bare": []}
    for fit in range(args.repeats):
        module = MinimalModule() if args.minimal_module else new_recipe()
        timer, bare = EpochTimer(), BareEpochs()
        timer.time_training_step(module)
        run_dir = Path(tempfile.mkdtemp(prefix="fit_", dir=workdir))
        if args.minimal_module:
            extras = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, limit_val_batches=0)  # untimed anyway
            app_callbacks = []
        else:
            extras = dict(logger=loggers.build(plain["logger"]["name"], run_dir))
            app_callbacks = callbacks.build(plain["callbacks"], run_dir)
        trainer = L.Trainer(**dict(plain["trainer"], max_epochs=args.epochs, max_steps=-1,
                                   **extras),
                            default_root_dir=run_dir, callbacks=[*app_callbacks, timer, bare])
        trainer.fit(module, datamodule=datamodule)
        timed["lightning"] += timer.epochs[1:]  # the first epoch of each side warms up
        timed["bare"] += bare.epochs[1:]
        print(f"  fit {fit + 1} of {args.repeats} done", flush=True)
    rates = {name: sum(e.samples for e in epochs) / sum(e.seconds for e in epochs)
             for name, epochs in timed.items()}
    lit, bare_rate = rates["lightning"], rates["bare"]
    ratio = lit / bare_rate
    print()
    lightning_side = "lightning, minimal module" if args.minimal_module else "lightning recipe"
    print(harness.table(
        ["loop", "samples/s (all timed epochs)", "epochs timed"],
        [(lightning_side, f"{lit:,.0f}", len(timed["lightning"])),
         ("bare PyTorch", f"{bare_rate:,.0f}", len(timed["bare"]))]))
    verdict = "ok" if ratio >= TARGET else f"MISSES >= {TARGET:.2f}"
    print(f"\nlightning / bare = {ratio:.2f}   (target >= {TARGET:.2f}: {verdict})")
    print(f"({steps_per_epoch} steps per epoch; temporary logs and checkpoints in {workdir})")
    lit_step, bare_step = per_step_ms(timed["lightning"]), per_step_ms(timed["bare"])
    in_step = per_step_ms(timed["lightning"], "in_training_step")
    print(f"\nwhere a step's time goes (means over the timed epochs, every step counted):\n"
          f"  bare loop                                        {bare_step:7.3f} ms\n"
          f"  lightning                                        {lit_step:7.3f} ms\n"
          f"    inside the recipe's training_step              {in_step:7.3f} ms  "
          f"(+{in_step - bare_step:.3f} over the bare step: metrics, logging, and the "
          f"callbacks' backward/optimizer hooks)\n"
          f"    outside it: Lightning's loop, batch hooks     {lit_step - in_step:7.3f} ms")


if __name__ == "__main__":
    main()
