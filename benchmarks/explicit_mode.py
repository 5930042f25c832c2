"""What ``trainer.explicit()`` costs: per call, and per training step of real models.

    python -m benchmarks.explicit_mode [--repeats N] [--threads T] [--only NAME ...]

Per call: 100 calls of ``torch.nn.functional.gelu`` on a small tensor routed through one
open mode, against ``trainer.functional.gelu`` called directly (the same rule, no mode): the
difference is the mode's dispatch. Per step: a Hugging Face model (GPT-2, LLaMA, BERT, ResNet at the tests' small
configs, float32) converted with ``trainer.nn.convert``, whose forward runs inside the mode,
against the same model natively; a step is forward, loss and backward. Both sides run in this
process, interleaved (``harness.compare``). Needs ``transformers``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as torch_F

import trainer
import trainer.functional as F
from benchmarks import harness


@dataclass
class Case:
    name: str
    explicit: object  # () -> None
    native: object


def call_cases() -> list[Case]:
    x = torch.randn(64, 64, requires_grad=True)

    def routed():  # 100 calls in one block: the dispatch, the block's opening amortized
        with trainer.explicit():
            for _ in range(100):
                torch_F.gelu(x)

    def direct():
        for _ in range(100):
            F.gelu(x)

    return [Case("100 x gelu 64x64 forward: through the mode / the rule directly", routed,
                 direct)]


def model_cases() -> list[Case]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integrations"))
    from test_hf_models import MODELS, prepared  # the tests' own small configs

    import trainer.nn as nn

    cases = []
    for name in MODELS:
        model, inputs = prepared(name, torch.float32)
        explicit, _ = nn.convert(model)

        def step(m=model, inputs=inputs):
            m(**inputs).loss.backward()

        def explicit_step(m=explicit, inputs=inputs):
            m(**inputs).loss.backward()

        cases.append(Case(f"{name} train step: converted / native", explicit_step, step))
    cases.append(_larger_gpt2())
    return cases


def _larger_gpt2() -> Case:
    """A GPT-2 whose step is compute, not per-call overhead: 4 layers of width 256 over 8
    sequences of 128 tokens (~9M parameters)."""
    import transformers

    import trainer.nn as nn

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=4, n_head=4, n_embd=256, vocab_size=1024,
                                     n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    explicit, _ = nn.convert(model)
    ids = torch.randint(0, 1024, (8, 128))
    return Case("gpt2 4x256, 8x128 tokens, train step: converted / native",
                lambda: explicit(input_ids=ids, labels=ids).loss.backward(),
                lambda: model(input_ids=ids, labels=ids).loss.backward())


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0])
    harness.add_only_flag(p, "cases")
    args = p.parse_args(argv)
    harness.setup(args, "trainer.explicit(): explicit / native")
    rows = []
    for case in harness.only([*call_cases(), *model_cases()], args.only):
        timing = harness.compare(case.explicit, case.native, args)
        rows.append((case.name, harness.fmt_time(timing.a), harness.fmt_time(timing.b),
                     timing.summary()))
        print(f"  done: {case.name}", flush=True)
    print()
    print(harness.table(["case", "explicit", "native / direct", "ratio [IQR]"], rows))


if __name__ == "__main__":
    main()
