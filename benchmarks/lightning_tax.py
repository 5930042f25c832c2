"""What Lightning (and the recipe around the model) costs: training samples/second of the app's
LightningModule under ``lightning.Trainer`` against a bare PyTorch loop.

    python -m benchmarks.lightning_tax [--epochs 2] [--repeats 5] [--threads T] [override ...]

The config is composed from conf/ exactly as ``python -m trainer`` composes it, with Hydra
overrides from the command line (``data=mnist1d model=cnn1d``, ...). Both sides then use
the same data module (same batches), a model of the same config and seed (identical weights),
the same loss (``trainer.nn.CrossEntropyLoss``), optimizer and learning-rate schedule:

  * lightning: ``trainer.recipe.Recipe`` fitted by a ``lightning.Trainer`` built from the
    config's ``trainer``/``callbacks`` groups, as the app builds it (loggers write to a temporary
    folder), so its per-step metrics, logging, progress bar and hooks are all in the price;
  * bare: ``for x, y in loader: loss(model(x), y).backward(); step; zero_grad`` (+ scheduler).

Only training is timed: from the start of a training epoch to the end of its last batch, so
validation and checkpointing at epoch end stay out on both sides. The two alternate, one
round of ``--epochs`` epochs each; the first round is warm-up. Target: ratio >= 0.90.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks import harness

TARGET = 0.90


def load_app():
    """The app's pieces, or a clear message that it is not there yet."""
    try:
        import lightning as L
        from lightning.pytorch.callbacks import Callback

        from trainer import callbacks, config, data, recipe
    except ImportError as e:
        raise SystemExit(
            f"lightning_tax: the Lightning app is not importable yet ({e}). It needs "
            "trainer.recipe.Recipe, trainer.data.build, trainer.callbacks.build and "
            "trainer.config (Hydra configs in conf/), as `python -m trainer` uses them."
        ) from e
    return L, Callback, callbacks, config, data, recipe


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
        """Seconds and samples of each training epoch, up to the end of its last batch."""

        def __init__(self):
            self.epochs: list[tuple[float, int]] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.start, self.last_end, self.samples = time.perf_counter(), None, 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.samples += len(batch[1])
            self.last_end = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):  # runs after validation: not timed
            if self.last_end is not None:
                self.epochs.append((self.last_end - self.start, self.samples))

    return EpochTimer


def main(argv=None) -> None:
    p = harness.parser("Training samples/second: Lightning recipe vs bare PyTorch loop "
                       "(--repeats = timed rounds)", repeats=8, ab_timing=False)
    p.add_argument("--epochs", type=int, default=3,
                   help="training epochs per round (default %(default)s)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m trainer")
    args = p.parse_args(argv)
    L, Callback, callbacks, config, data, recipe = load_app()
    harness.setup(args, "Lightning recipe vs bare PyTorch loop: training samples/second",
                  protocol=f"rounds of {args.epochs} epoch(s), lightning then bare, "
                  f"{args.repeats} timed after 1 warm-up round; median samples/s over epochs")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")

    plain = compose(config, args.overrides)
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

    lit_module, bare_module = new_recipe(), new_recipe()
    EpochTimer = make_epoch_timer(Callback)
    workdir = Path(tempfile.mkdtemp(prefix="lightning_tax_"))

    def lightning_round() -> list[tuple[float, int]]:
        timer = EpochTimer()
        run_dir = Path(tempfile.mkdtemp(prefix="round_", dir=workdir))
        trainer_args = dict(plain["trainer"], max_epochs=args.epochs, max_steps=-1)
        from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

        logger_cls = TensorBoardLogger if plain["logger"]["name"] == "tensorboard" else CSVLogger
        trainer = L.Trainer(**trainer_args, default_root_dir=run_dir,
                            logger=logger_cls(run_dir, name="", version=""),
                            callbacks=[*callbacks.build(plain["callbacks"], run_dir), timer])
        trainer.fit(lit_module, datamodule=datamodule)
        return timer.epochs

    model, loss_fn = bare_module.model, bare_module.loss
    optimizer = recipe.build_optimizer(model.parameters(), plain["optimizer"])
    clip = plain["optimizer"].get("grad_clip", 0.0)
    steps_per_epoch = batch_limit(plain["trainer"].get("limit_train_batches", 1.0),
                                  len(datamodule.train_dataloader()))

    def bare_schedule(rounds: int):
        """The recipe's schedule, stepped as configure_optimizers says (per step or epoch)."""
        sched = plain["scheduler"]
        if sched["name"] == "cosine":
            total = rounds * args.epochs * steps_per_epoch
            factor = recipe.WarmupCosine(total, sched.get("warmup_steps", 0),
                                         sched.get("min_lr_ratio", 0.0))
            return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "step"
        if sched["name"] == "step":
            return torch.optim.lr_scheduler.StepLR(optimizer, sched["step_size"],
                                                   sched.get("gamma", 0.1)), "epoch"
        return None, None

    schedule, interval = bare_schedule(args.repeats + 1)

    def bare_round() -> list[tuple[float, int]]:
        epochs = []
        model.train()
        for _ in range(args.epochs):
            start, samples = time.perf_counter(), 0
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
            epochs.append((time.perf_counter() - start, samples))
            if interval == "epoch":
                schedule.step()
        return epochs

    rates = {"lightning": [], "bare": []}
    for round_index in range(args.repeats + 1):  # round 0 warms up
        for name, run in (("lightning", lightning_round), ("bare", bare_round)):
            epochs = run()
            if round_index:
                rates[name] += [samples / seconds for seconds, samples in epochs]
        print(f"  round {round_index}{' (warm-up)' if not round_index else ''} done", flush=True)
    lit, bare = statistics.median(rates["lightning"]), statistics.median(rates["bare"])
    ratio = lit / bare
    print()
    print(harness.table(
        ["loop", "samples/s (median over epochs)", "epochs timed"],
        [("lightning recipe", f"{lit:,.0f}", len(rates["lightning"])),
         ("bare PyTorch", f"{bare:,.0f}", len(rates["bare"]))]))
    verdict = "ok" if ratio >= TARGET else f"MISSES >= {TARGET:.2f}"
    print(f"\nlightning / bare = {ratio:.2f}   (target >= {TARGET:.2f}: {verdict})")
    print(f"({steps_per_epoch} steps per epoch; temporary logs and checkpoints in {workdir})")


if __name__ == "__main__":
    main()
