"""The recipe for a language model: cook, taste, adjust, on next-token prediction.

The same three moves as the classifier's (:class:`trainer.recipe.Recipe`), on batches of
character windows ``x, y`` of shape ``(B, T)`` where ``y`` is ``x`` shifted by one:

- **cook**: the network's body, token ids to the final hidden states ``h`` ``(B, T, C)``;
- **taste**: next-token cross-entropy at every position, through the tied head, as the fused
  :func:`trainer.functional.linear_cross_entropy` computes it, never holding the
  ``(B·T, V)`` logits for backward; then bits per character and perplexity from it;
- **adjust**: backward through the rules, gradient clipping, one AdamW step (nanoGPT's
  parameter groups: no decay on biases, norms or embeddings), the warmup-cosine schedule.

Training counts steps: an epoch of the text datamodule is ``data.train_batches`` steps, after
which validation runs on a fixed set of ``data.eval_batches`` batches and a sample from a
fixed prompt goes to TensorBoard's TEXT tab.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

import trainer.functional as F
from trainer import models
from trainer.recipe import Recipe

#: log₂ e: a loss in nats per character, times this, is bits per character.
BITS_PER_NAT = 1.0 / math.log(2.0)


class NextTokenLoss(torch.nn.Module):
    """Mean cross-entropy of logits ``(B, T, V)`` against next tokens ``(B, T)``, through
    :func:`trainer.functional.cross_entropy` (looked up at each call, so the gradient check
    can route it to torch's own for its reference pass)."""

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class LanguageModelRecipe(Recipe):
    """Trains a next-token model (``model=gpt``) on a text datamodule (``data=shakespeare_char``
    or ``data=text``).

    Args, beyond :class:`~trainer.recipe.Recipe`'s:
        vocab: the characters, in id order (the datamodule's vocabulary), kept in the
            hyperparameters so a checkpoint samples text with no corpus at hand.
        sample: ``{"prompt": str, "max_new_tokens": int, "temperature": float, "top_k": int}``
            for the sample logged at each validation (``max_new_tokens=0``: none).
    """

    task = "next_token"
    monitor = ("val/loss", "min")

    def __init__(self, model: Mapping[str, Any], optimizer: Mapping[str, Any],
                 scheduler: Mapping[str, Any] | None = None, *, input_shape: Sequence[int],
                 num_classes: int, config: Mapping[str, Any] | None = None,
                 accumulate_grad_batches: int = 1, vocab: Sequence[str] = (),
                 sample: Mapping[str, Any] | None = None):
        super().__init__(model, optimizer, scheduler, input_shape=input_shape,
                         num_classes=num_classes, config=config,
                         accumulate_grad_batches=accumulate_grad_batches)
        if not hasattr(self.model, "hidden"):
            raise models.ModelInputError("model.name", f"{model['name']} is not a language "
                                         "model: a text data set needs model=gpt")
        self.loss = NextTokenLoss()  # on logits: the gradient check's reference pass uses it

    def build_metrics(self, num_classes: int) -> None:
        """None kept across batches: the loss (and accuracy) are averaged by ``self.log``."""

    # -- the recipe ------------------------------------------------------------------------------

    def cook(self, x: Tensor) -> Tensor:
        """Forward pass through the explicit layers: token ids (B, T) to the final hidden
        states (B, T, C), before the head."""
        return self.model.hidden(x)

    def taste(self, dish: Tensor, y: Tensor, stage: str) -> Tensor:
        """Next-token cross-entropy at every position, through the tied head; bits per
        character and perplexity follow from it. Logged per step in training, averaged over
        the fixed batches in validation and test (with next-character accuracy there)."""
        head = self.model.lm_head
        loss = F.linear_cross_entropy(dish.flatten(0, 1), head.weight, y.flatten(), head.bias)
        if stage == "train":
            if self._step_is_logged():
                self.log_dict(self._metrics(stage, loss), on_step=True, on_epoch=False,
                              prog_bar=False, batch_size=y.numel())
                self.log("train/loss", loss.detach(), on_step=True, on_epoch=False,
                         prog_bar=True, batch_size=y.numel())
            return loss
        logits = head(dish)  # evaluation only: no graph is kept
        accuracy = (logits.argmax(-1) == y).float().mean()
        self.log_dict({f"{stage}/loss": loss.detach(), f"{stage}/acc": accuracy},
                      on_step=False, on_epoch=True, prog_bar=True, batch_size=y.numel(),
                      sync_dist=True)
        return loss

    @staticmethod
    def _metrics(stage: str, loss: Tensor) -> dict[str, Tensor]:
        nats = loss.detach()
        return {f"{stage}/bpc": nats * BITS_PER_NAT, f"{stage}/ppl": nats.exp()}

    # -- Lightning hooks -------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        """The logits (B, T, V), for predictions and sampling."""
        return self.model(x)

    def _log_metrics(self, stage: str) -> None:
        """Bits per character and perplexity of the epoch's mean loss (the mean of the
        exponentials is not the exponential of the mean)."""
        if stage == "train":
            return
        mean = self.trainer.callback_metrics.get(f"{stage}/loss")
        if mean is not None:
            self.log_dict(self._metrics(stage, mean), on_step=False, on_epoch=True,
                          sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")
        if not self.trainer.sanity_checking:
            self._log_sample()

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        """Next-character probabilities at every position."""
        return F.softmax(self.forward(batch[0]), dim=-1)

    def parameter_groups(self) -> list[dict]:
        """AdamW's groups as nanoGPT's: decay on the matmul weights only (see
        :func:`trainer.models.gpt.gpt_param_groups`)."""
        from trainer.models.gpt import gpt_param_groups

        return gpt_param_groups(self.model, self.hparams.optimizer.get("weight_decay", 0.0))

    # -- the sample ------------------------------------------------------------------------------

    def sample_text(self, prompt: str | None = None, max_new_tokens: int | None = None,
                    temperature: float | None = None, top_k: int | None = None,
                    seed: int = 0) -> str:
        """Text generated from ``prompt`` (the ``sample`` options fill what is not given),
        reproducibly under ``seed``."""
        from trainer.data.text import CharVocab
        from trainer.sample import generate

        options = {"prompt": "\n", "max_new_tokens": 200, "temperature": 0.8, "top_k": 200}
        options.update(self.hparams.get("sample") or {})
        given = {"prompt": prompt, "max_new_tokens": max_new_tokens,
                 "temperature": temperature, "top_k": top_k}
        options.update({k: v for k, v in given.items() if v is not None})
        vocab = CharVocab(self.hparams.vocab)
        idx = vocab.encode(options["prompt"])[None].to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.model.training
        try:
            out = generate(self.model, idx, options["max_new_tokens"],
                           temperature=options["temperature"], top_k=options["top_k"],
                           generator=generator)
        finally:
            self.model.train(was_training)
        return vocab.decode(out[0].tolist())

    def _log_sample(self) -> None:
        if not (self.hparams.get("sample") or {}).get("max_new_tokens", 200):
            return
        writers = [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers or not self.trainer.is_global_zero:
            return
        text = self.sample_text()
        # Markdown: four spaces make a code block, which keeps the play's line breaks.
        shown = "\n".join("    " + line for line in text.splitlines())
        writers[0].add_text("samples", shown, self.global_step)


__all__ = ["BITS_PER_NAT", "LanguageModelRecipe", "NextTokenLoss"]
