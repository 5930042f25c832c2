"""Text from a trained language model: ``generate`` continues token ids one sampled token at a
time, as nanoGPT's ``GPT.generate`` does.

From the command line, a checkpoint of ``python -m trainer experiment=shakespeare_char``
continues a prompt (the vocabulary comes from the checkpoint; no text is needed)::

    python -m trainer.sample ckpt_path=<run>/checkpoints/best.ckpt prompt="ROMEO:" \
        max_new_tokens=500 temperature=0.8 top_k=200 seed=0

Keys not given take the run's ``sample`` settings. A bad key or value: one line, exit 2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainer.functional._util import fail, shape_str


def generate(model: torch.nn.Module, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """``idx`` (B, T) followed by ``max_new_tokens`` sampled ids: (B, T + max_new_tokens).

    Each step feeds the last ``model.block_size`` ids (the context is cropped to what the
    model was built for), takes the logits of the last position, divides them by
    ``temperature`` (lower: surer, higher: more varied), keeps only the ``top_k`` largest
    (others get probability 0) and draws the next id with :func:`torch.multinomial` from
    ``generator`` (the global RNG if None): the same seeded generator gives the same ids.
    The model runs in eval mode (no dropout) under ``torch.no_grad``; its mode is restored.
    """
    op = "generate"
    if not isinstance(idx, Tensor) or idx.dim() != 2 or idx.shape[1] == 0 \
            or idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        got = f"idx {shape_str(idx)} of dtype {idx.dtype}" if isinstance(idx, Tensor) \
            else type(idx).__name__
        raise fail(op, "token ids idx of shape (B, T), T >= 1, an integer tensor", got)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise fail(op, "max_new_tokens a whole number >= 0", f"{max_new_tokens!r}")
    if not temperature > 0:
        raise fail(op, "temperature > 0", f"temperature={temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise fail(op, "top_k None or a whole number >= 1", f"top_k={top_k!r}")
    block_size = model.block_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = model(idx[:, -block_size:])[:, -1, :] / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, num_samples=1, generator=generator)
                idx = torch.cat((idx, next_id.to(idx.dtype)), dim=1)
    finally:
        model.train(was_training)
    return idx


#: The command line's keys, and how each value is read.
KEYS = {"ckpt_path": str, "prompt": str, "max_new_tokens": int, "temperature": float,
        "top_k": int, "seed": int, "device": str}


def parse(argv: list[str]) -> dict:
    """``key=value`` arguments -> ``{key: value}``; a refusal names the key."""
    from trainer.config import ConfigError

    options = {}
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep or key not in KEYS:
            raise ConfigError(key or argument, f"expected key=value with a key among "
                              f"{', '.join(KEYS)}; got {argument!r}")
        try:
            options[key] = KEYS[key](value)
        except ValueError:
            raise ConfigError(key, f"must be {KEYS[key].__name__}, got {value!r}") from None
    if "ckpt_path" not in options:
        raise ConfigError("ckpt_path", "give the checkpoint to sample from: "
                          "ckpt_path=<run>/checkpoints/best.ckpt")
    return options


def main(argv: list[str] | None = None) -> None:
    """``python -m trainer.sample ckpt_path=... [prompt=...] [max_new_tokens=...] ...``"""
    import sys

    from trainer.callbacks.checkpointing import CheckpointError
    from trainer.config import ConfigError

    try:
        options = parse(list(sys.argv[1:] if argv is None else argv))
        from trainer.language_model import LanguageModelRecipe

        path, device = options.pop("ckpt_path"), options.pop("device", "cpu")
        try:
            recipe = LanguageModelRecipe.load_from_checkpoint(path, map_location=device,
                                                              weights_only=True)
        except FileNotFoundError:
            raise ConfigError("ckpt_path", f"{path}: no such file") from None
        except (KeyError, TypeError) as error:
            raise ConfigError("ckpt_path", f"{path}: not a language model's checkpoint "
                              f"({type(error).__name__}: {error})") from None
        unknown = set(options.get("prompt", "")) - set(recipe.hparams.vocab)
        if unknown:
            raise ConfigError("prompt", f"characters outside the model's vocabulary: "
                              f"{''.join(sorted(unknown))!r}")
        print(recipe.sample_text(**options))
    except (ConfigError, CheckpointError) as error:
        print(f"error: {error.key}: {error.problem}", file=sys.stderr)
        sys.exit(2)


__all__ = ["generate", "main"]


if __name__ == "__main__":
    main()
