#!/usr/bin/env bash
# The accelerator checks of issue 5 as one prepared run, for a lent GPU with little device time
# (about 7 minutes on an H100, estimated from the timings of 2026-11-23). Run it from the
# repository root; results go to $OUT.
#
#   OUT=/tmp/device_check benchmarks/device_check.sh
#   SMOKE=1 OUT=/tmp/device_check benchmarks/device_check.sh   # tiny sizes on any backend, CPU too
#
# In order of importance, each step with its own time limit so that one slow step cannot use up
# the rest: the gpu section of benchmarks.run (full-test-set NLL target, on-device epochs of the
# 2,400-epoch DenseVAE protocol with the RealNVP blocks scanned and unrolled), the upsampling
# layers two ways (benchmarks.conv_layers --transposed: is the CPU's per-phase form right here?),
# a profile of the unrolled RealNVP epoch (benchmarks.epoch_time --profile), the RealNVP epochs
# with CUDA graphs over loops too, then the train section. DATA_CACHE=<data.cache_dir> evaluates
# the real static MNIST test images.
set -uo pipefail
OUT=${OUT:-/tmp/device_check}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
smoke=()
epoch_examples=50000  # Training images per epoch of the graphs steps.
if [[ -n "${SMOKE:-}" ]]; then smoke=(--gpu_smoke); epoch_examples=1280; fi
data=()
if [[ -n "${DATA_CACHE:-}" ]]; then data=(--data_cache="$DATA_CACHE"); fi

step() {  # step NAME SECONDS COMMAND...: stdout+stderr to $OUT/NAME.log, the exit status recorded.
  local name=$1 seconds=$2
  shift 2
  local start=$SECONDS
  timeout "$seconds" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
}

{ nvidia-smi || true; "$PYTHON" -c 'import jax; print(jax.__version__, jax.devices())'; } \
    > "$OUT/environment.txt" 2>&1
step gpu 300 "$PYTHON" -m benchmarks.run --only=gpu --gpu_epochs=5 "${smoke[@]}" "${data[@]}" \
    --json="$OUT/gpu.json"
step transposed 90 "$PYTHON" -m benchmarks.conv_layers --transposed
# Where the unrolled RealNVP epoch's time goes (50 steps traced: kernels by total time).
step profile 120 "$PYTHON" -m benchmarks.epoch_time \
    --config=experiments/configs/xu2019.py:table1,dense,rnvp_prior --config.model.flow_unroll=20 \
    --epochs=2 --num_examples=6400 --profile
# The same epochs with XLA's command buffers (CUDA graphs) also capturing loops and conditionals:
# the RealNVP epoch is bound by kernel launches. A flag this XLA does not know fails only this step.
graphs=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE
for unroll in 1 20; do
  XLA_FLAGS="${XLA_FLAGS:-} $graphs" step "graphs_unroll$unroll" 120 "$PYTHON" -m \
      benchmarks.epoch_time --config=experiments/configs/xu2019.py:table1,dense,rnvp_prior \
      --config.model.flow_unroll=$unroll --epochs=3 --num_examples="$epoch_examples"
done
step train 120 "$PYTHON" -m benchmarks.run --only=train --windows=3 --json="$OUT/train.json"
# FID features of 10,000 images, jax against pytorch-fid (only where the fidcheck extra is
# installed: torch, torchvision, pytorch-fid; the step fails alone otherwise).
fid_images=10000
if [[ -n "${SMOKE:-}" ]]; then fid_images=8; fi
step fid 150 "$PYTHON" -m benchmarks.fid_throughput --images=$fid_images --batch_size=200 --windows=3
# VAEPP: the Algorithm 1 / 2 step against the plain VAE step on the same nets, and log Z's
# samples per second (1,000 samples per image, as at evaluation).
vaepp=(--log_z_images=500 --log_z_samples=1000)
if [[ -n "${SMOKE:-}" ]]; then vaepp=(--smoke); fi
step vaepp 150 "$PYTHON" -m benchmarks.vaepp_step "${vaepp[@]}"
