#!/usr/bin/env bash
# Every benchmark whose numbers benchmarks/README.md shows, one after the other (never two at
# once: they would time each other), each output saved to OUT_DIR/<name>.txt.
#   benchmarks/run_all.sh [OUT_DIR] [extra flags for every script, e.g. --threads 1]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/benchmarks-$(date +%Y%m%d-%H%M%S)}"
shift || true
mkdir -p "$out"
run() {
    local name=$1
    shift
    echo "== python -m $* $EXTRA" | tee "$out/$name.txt"
    python -m "$@" $EXTRA 2>&1 | grep -v 'it/s' | tee -a "$out/$name.txt"
}
EXTRA="$*"
run layers benchmarks.layers
run op_sizes benchmarks.op_sizes
run models benchmarks.models --breakdown --noise-floor
run linear_limit benchmarks.linear_limit
run conv_weight_grad benchmarks.conv_weight_grad
run fused_ce benchmarks.fused_ce
run gpt_shakespeare benchmarks.gpt_shakespeare --steps 200
run lightning_tax_defaults benchmarks.lightning_tax
# the Fashion-MNIST CNN's 15 epochs of 469 steps would take half an hour: 4 epochs of 100
run lightning_tax_fashion_cnn benchmarks.lightning_tax --epochs 4 experiment=fashion_cnn \
    trainer.limit_train_batches=100
run lightning_tax_mnist1d_cnn benchmarks.lightning_tax experiment=mnist1d_cnn
# the same two small models without the "seeing inside" callbacks: what Lightning alone costs
no_diagnostics="callbacks.gradient_flow.enabled=false callbacks.gradient_check.enabled=false"
run lightning_tax_defaults_no_diagnostics benchmarks.lightning_tax $no_diagnostics
run lightning_tax_mnist1d_cnn_no_diagnostics benchmarks.lightning_tax experiment=mnist1d_cnn \
    $no_diagnostics
# ...and Lightning alone: a minimal module (forward, loss, backward, step), no callbacks
run lightning_tax_defaults_minimal benchmarks.lightning_tax --minimal-module
run lightning_tax_mnist1d_cnn_minimal benchmarks.lightning_tax --minimal-module \
    experiment=mnist1d_cnn
echo "outputs in $out"
