#!/usr/bin/env bash
# The pending accelerator checks as one prepared run, for a lent GPU with little device time (a
# session gets ~15 minutes of it, start-up included, and one command at most 10). Run it from the
# repository root; results go to $OUT.
#
#   OUT=/tmp/device_check benchmarks/device_check.sh
#   SMOKE=1 OUT=/tmp/device_check benchmarks/device_check.sh   # tiny sizes on any backend, CPU too
#   STEPS="gpu train" DEADLINE_S=500 benchmarks/device_check.sh  # some steps, in this order
#
# The steps run in STEPS' order (default: all, most wanted first), each under its own time limit
# and all of them under DEADLINE_S (default 560 s, inside one 600-s command): a step gets at most
# what is left, and one with under 20 s left is skipped and written down as skipped, so a second
# command can run the rest (STEPS="the skipped ones"). $OUT/steps.txt says how each ended.
#   fid          FID features of 10,000 images, our jitted Inception against pytorch-fid (issue 19;
#                needs torch, torchvision and pytorch-fid, else this step alone fails)
#   vaepp        the VAEPP step against the plain VAE step, and log Z's samples per second (issue 20)
#   gpu          benchmarks.run's gpu section: the full-test-set NLL target, on-device epochs of the
#                2,400-epoch DenseVAE protocol with the RealNVP blocks scanned and unrolled
#   chunks       on-device DenseVAE epochs whole against the trainer's chunks of 50 steps, at most
#                two queued (train.device_chunk_steps, issue 43): what the SIGTERM bound costs
#   train        benchmarks.run's train section (examples/s of the four train steps)
#   transposed   the upsampling layers two ways (is the CPU's per-phase form right here?)
#   profile      where the unrolled RealNVP epoch's time goes (50 steps traced)
#   graphs_unroll1, graphs_unroll20
#                the RealNVP epochs with XLA's command buffers (CUDA graphs) over loops too
# DATA_CACHE=<data.cache_dir> evaluates the real static MNIST test images in `gpu`. Where packages
# are missing (the lent machine's image has JAX, flax, optax, orbax and torch, but neither
# ml_collections nor pytorch-fid, nor TensorFlow: the steps here need no tf.data), put their
# wheels in .whl/ (`pip download --no-deps -d .whl ml_collections pytorch-fid`) and carry it:
# they are installed into /tmp/site first.
set -uo pipefail
OUT=${OUT:-/tmp/device_check}
PYTHON=${PYTHON:-python}
DEADLINE_S=${DEADLINE_S:-560}
STEPS=${STEPS:-fid vaepp gpu chunks train transposed profile graphs_unroll1 graphs_unroll20}
mkdir -p "$OUT"
smoke=()
epoch_examples=50000  # Training images per epoch of the graphs and chunks steps.
fid_images=10000
vaepp=(--log_z_images=500 --log_z_samples=1000)  # 1,000 samples per image, as at evaluation.
if [[ -n "${SMOKE:-}" ]]; then
  smoke=(--gpu_smoke); epoch_examples=1280; fid_images=8; vaepp=(--smoke)
fi
data=()
if [[ -n "${DATA_CACHE:-}" ]]; then data=(--data_cache="$DATA_CACHE"); fi
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl > "$OUT/wheels.log" 2>&1 && export PYTHONPATH=/tmp/site
fi

step() {  # step NAME SECONDS COMMAND...: stdout+stderr to $OUT/NAME.log, the exit status recorded.
  local name=$1 seconds=$2
  shift 2
  local left=$((DEADLINE_S - SECONDS))
  if ((left < 20)); then
    echo "$name: skipped, ${left} s left of DEADLINE_S=$DEADLINE_S" | tee -a "$OUT/steps.txt"
    return
  fi
  ((seconds > left)) && seconds=$left
  local start=$SECONDS
  timeout "$seconds" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - start)) s (limit $seconds s)" | tee -a "$OUT/steps.txt"
}

# The RealNVP epochs with command buffers also capturing loops and conditionals: the RealNVP epoch
# is bound by kernel launches. A flag this XLA does not know fails only this step.
graphs=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE
rnvp=(--config=experiments/configs/xu2019.py:table1,dense,rnvp_prior)

run_step() {
  case $1 in
    fid) step fid 150 "$PYTHON" -m benchmarks.fid_throughput --images=$fid_images --batch_size=200 \
             --windows=3 ;;
    vaepp) step vaepp 150 "$PYTHON" -m benchmarks.vaepp_step "${vaepp[@]}" ;;
    gpu) step gpu 300 "$PYTHON" -m benchmarks.run --only=gpu --gpu_epochs=5 "${smoke[@]}" \
             "${data[@]}" --json="$OUT/gpu.json" ;;
    chunks) step chunks 120 "$PYTHON" -m benchmarks.epoch_time \
                --config=experiments/configs/compare_priors.py:standard --epochs=5 \
                --num_examples="$epoch_examples" --compare_chunk_steps=50 ;;
    train) step train 120 "$PYTHON" -m benchmarks.run --only=train --windows=3 \
               --json="$OUT/train.json" ;;
    transposed) step transposed 90 "$PYTHON" -m benchmarks.conv_layers --transposed ;;
    profile) step profile 120 "$PYTHON" -m benchmarks.epoch_time "${rnvp[@]}" \
                 --config.model.flow_unroll=20 --epochs=2 --num_examples=6400 --profile ;;
    graphs_unroll1|graphs_unroll20)
      local unroll=${1#graphs_unroll}
      XLA_FLAGS="${XLA_FLAGS:-} $graphs" step "$1" 120 "$PYTHON" -m benchmarks.epoch_time \
          "${rnvp[@]}" --config.model.flow_unroll=$unroll --epochs=3 --num_examples="$epoch_examples" ;;
    *) echo "$1: unknown step (known: fid vaepp gpu chunks train transposed profile graphs_unroll1" \
            "graphs_unroll20)" | tee -a "$OUT/steps.txt" ;;
  esac
}

{ nvidia-smi || true; "$PYTHON" -c 'import jax; print(jax.__version__, jax.devices())'; } \
    > "$OUT/environment.txt" 2>&1
for name in $STEPS; do run_step "$name"; done
