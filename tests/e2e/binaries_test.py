"""The real `experiments.train` / `experiments.evaluate` binaries, end to end on mock data, in
subprocesses: a run killed with SIGKILL, restarted, stopped with SIGTERM (which saves the step it was
on) and restarted again ends with the same parameters, bit for bit, as a run never interrupted."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import xu2019
import helpers

ROOT = helpers.ROOT
NUM_STEPS = 160  # Long enough that a signal sent at the first checkpoint (step 20) lands mid-run.


def _command(module, *flags):
  return [sys.executable, os.path.join(ROOT, 'tests', 'mock_binary.py'), module, *flags]


def _train_command(workdir):
  return _command('experiments.train', '--config=experiments/configs/xu2019.py:runlocal',
                  f'--workdir={workdir}', f'--config.train.num_steps={NUM_STEPS}',
                  '--config.train.checkpoint_every_steps=20', '--config.train.log_every_steps=20')


def _env():
  return helpers.subprocess_environment(1)


def _run(cmd):
  result = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_train_killed_and_resumed_equals_uninterrupted_then_evaluate(tmp_path):
  """One run killed with SIGKILL at its first checkpoint, resumed, stopped with SIGTERM (a
  preemption: the step in progress finishes, its state is saved, the process exits with 143) at
  the next one, and resumed again ends with the parameters of an uninterrupted run, bit for bit."""
  reference, resumed = str(tmp_path / 'reference'), str(tmp_path / 'resumed')
  _run(_train_command(reference))

  proc = subprocess.Popen(_train_command(resumed), cwd=ROOT, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  helpers.wait_for_checkpoint(resumed, proc)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, 'the run finished before it could be killed'
  killed_at = helpers.checkpoint_steps(resumed)
  assert killed_at and killed_at[-1] < NUM_STEPS, killed_at

  # stderr to a file, not a pipe, which the process could fill while the test waits.
  with open(tmp_path / 'termed.log', 'w+') as log:
    proc = subprocess.Popen(_train_command(resumed), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=log)
    helpers.wait_for_checkpoint(resumed, proc, after=killed_at[-1])
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    log.seek(0)
    stderr = log.read()
  assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert f'Resumed from the checkpoint of step {killed_at[-1]}' in stderr
  saved = helpers.checkpoint_steps(resumed)[-1]
  assert killed_at[-1] < saved < NUM_STEPS, (killed_at, saved)
  assert f'SIGTERM: the state of step {saved} is saved' in stderr

  result = _run(_train_command(resumed))
  assert f'Resumed from the checkpoint of step {saved}' in result.stderr
  ref_params, ref_step = helpers.latest_params(reference)
  res_params, res_step = helpers.latest_params(resumed)
  assert ref_step == res_step == NUM_STEPS
  jax.tree.map(np.testing.assert_array_equal, res_params, ref_params)
  with open(os.path.join(resumed, 'metrics.jsonl')) as f:
    steps = [json.loads(line)['step'] for line in f]
  # One line per logged step and one for the step SIGTERM stopped at; no step twice.
  assert steps == sorted(set(range(20, NUM_STEPS + 1, 20)) | {saved})

  config = xu2019.get_config('runlocal')
  result = _run(_command('experiments.evaluate', f'--workdir={resumed}', '--max_examples=20',
                         f'--num_samples={config.eval.num_samples}'))
  with open(os.path.join(resumed, 'eval_test_subset20_seed0.json')) as f:
    metrics = json.load(f)
  for key in ('nll', 'elbo', 'reconstruction', 'kl', 'kl_z_given_x', 'active_units',
              'num_examples', 'num_samples'):
    assert key in metrics, key
  assert metrics['num_examples'] == 20 and metrics['num_samples'] == config.eval.num_samples
  assert np.isfinite(metrics['nll']) and metrics['nll'] > 0
  np.testing.assert_allclose(metrics['elbo'], metrics['reconstruction'] - metrics['kl'], rtol=1e-5)
  np.testing.assert_allclose(-metrics['nll'] - metrics['elbo'], metrics['kl_z_given_x'], rtol=1e-4)
  assert metrics['kl_z_given_x'] >= 0
  assert 0 <= metrics['active_units'] <= config.model.latent_dim
  assert json.loads(result.stdout)['nll'] == metrics['nll']
  assert metrics['checkpoint'] == 'latest'  # runlocal trains without early stopping.
  for png in ('samples.png', 'reconstructions_test.png'):
    assert os.path.getsize(os.path.join(resumed, png)) > 100
  # A bad sample-quality argument fails at start-up, before the likelihood evaluation (hours on a
  # real run): no result of the 10-example evaluation is written.
  missing = str(tmp_path / 'missing.pth')
  bad = subprocess.run(_command('experiments.evaluate', f'--workdir={resumed}', '--max_examples=10',
                                '--sample_quality', f'--fid_weights={missing}'),
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and "Error: FID needs pytorch-fid's Inception weights" in bad.stderr
  assert missing in bad.stderr and 'Traceback' not in bad.stderr
  assert not os.path.exists(os.path.join(resumed, 'eval_test_subset10_seed0.json'))
  # The report's MALA settings reach the same check: this run has no pull-back prior.
  bad = subprocess.run(_command('experiments.evaluate', f'--workdir={resumed}', '--sample_quality',
                                '--likelihood=false', '--mala_steps=5'),
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and 'Traceback' not in bad.stderr
  assert ("Error: MALA settings (steps) need a run with a pull-back prior; this run's model.prior "
          "is 'realnvp'") in bad.stderr, bad.stderr


def test_a_gated_mlp_vae_with_a_per_pixel_logistic_trains_and_evaluates(tmp_path):
  """Tomczak & Welling's one-level VAE (gated MLP) with a per-pixel discretized logistic on 8-bit
  grey levels (their Frey Faces / Histopathology model; here mock MNIST), through both binaries."""
  workdir = str(tmp_path / 'run')
  env = dict(_env(), MOCK_MAX_VALUE='256')  # pixels 0 .. 255
  flags = ('--config=experiments/configs/tomczak2018.py:table1,vae,standard,mnist,runlocal',
           '--config.model.likelihood=discretized_logistic', '--config.data.binarize=False')
  for cmd in (_command('experiments.train', f'--workdir={workdir}', *flags),
              _command('experiments.evaluate', f'--workdir={workdir}', '--split=test')):
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Another likelihood than the entry's: no paper number.
    assert "Paper's test NLL" not in result.stderr
  params, step = helpers.latest_params(workdir)
  assert step == 20
  # Per-pixel means and log-scales: two decoder outputs per pixel.
  assert params['decoder']['logits']['kernel'].shape[-1] == 2 * 28 * 28
  with open(os.path.join(workdir, 'eval_test.json')) as f:
    result = json.load(f)
  assert np.isfinite(result['nll']) and result['nll'] > 0
  np.testing.assert_allclose(result['bits_per_dim'], result['nll'] / (28 * 28 * np.log(2)),
                             rtol=1e-9)
  assert 'paper_nll' not in result


def test_unknown_config_value_fails_at_start_up(tmp_path):
  cmd = _command('experiments.train', '--config=experiments/configs/xu2019.py:runlocal',
                 f'--workdir={tmp_path}', '--config.model.prior=vamp_prior')
  result = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert ("Error: Unknown model.prior 'vamp_prior'; allowed: standard, realnvp, mog, vampprior, "
          'vampprior_data') in result.stderr
  # One line, no traceback, and no config dump on the console (it is in config.json).
  assert 'Traceback' not in result.stderr and 'coupling_scale_bias' not in result.stderr


@pytest.mark.parametrize('config, message', [
    ('experiments/configs/dai2019.py:bogus',
     "Error: flag --config=experiments/configs/dai2019.py:bogus: Unknown dai2019 config token "
     "'bogus'; allowed: model: vae_xent"),
    ('experiments/configs/nope.py',
     "Error: --config: [Errno 2] No such file or directory: 'experiments/configs/nope.py'"),
])
def test_a_bad_config_token_or_file_is_one_line_and_start_up_is_quiet(tmp_path, config, message):
  """Exit 2 with one line, no traceback; and none of TensorFlow's oneDNN banner or JAX's TPU probe
  (a CPU-only machine) before it: the binary itself, not through the mock-data wrapper."""
  cmd = [sys.executable, '-m', 'experiments.train', f'--config={config}', f'--workdir={tmp_path}']
  result = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
  for noise in ('oneDNN custom operations', 'Unable to initialize backend', 'InitializeLog'):
    assert noise not in result.stderr, noise


# One bad value of each kind, through the binary: each stops with one line, exit 2, before any data
# is read (no workdir is written). Every key's wrong type is swept in tests/config_test.py.
_BAD_VALUES = [
    ('--config.train.bach_size=8', "Error: --config.train.bach_size=8: the config has no key "
     "'train.bach_size'; did you mean 'batch_size' for 'bach_size'?"),
    ('--config.train.batch_size=abc', 'Error: flag --config.train.batch_size=abc: invalid literal '
     "for int() with base 10: 'abc'"),
    ('--config.train.on_device=maybe', 'Error: flag --config.train.on_device=maybe: '),
    ('--config.eval.num_samples=0', 'Error: eval.num_samples must be an integer >= 1, got 0.'),
    ('--config.data.split_seed=-1', 'Error: data.split_seed must be an integer >= 0, got -1.'),
    ('--config.train.learning_rate=-1', 'Error: train.learning_rate must be > 0, got -1.0.'),
    ('--config.model.likelihood=poisson', "Error: Unknown model.likelihood 'poisson'; allowed: "),
]


def test_bad_values_of_each_kind_stop_the_binary_with_one_line(tmp_path):
  procs = []
  for i, (flag, _) in enumerate(_BAD_VALUES):
    cmd = [sys.executable, '-m', 'experiments.train', '--config=experiments/configs/xu2019.py:runlocal',
           f'--workdir={tmp_path / str(i)}', flag]
    procs.append(subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  for proc, (flag, message) in zip(procs, _BAD_VALUES):
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, (flag, stderr[-2000:])
    assert message in stderr and 'Traceback' not in stderr, (flag, stderr[-2000:])
  assert not any((tmp_path / str(i) / 'config.json').exists() for i in range(len(_BAD_VALUES)))


def test_your_own_arrays_train_resume_and_evaluate_through_the_binaries(tmp_path):
  """An .npz of 8-bit grey images (data.dataset=arrays), binarized like MNIST: trained, resumed and
  evaluated by the binaries; a bad file stops `train` with one line before anything is written."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (96, 28, 28, 1), dtype=np.uint8)
  path = str(tmp_path / 'mine.npz')
  np.savez(path, x_train=images[:80], x_test=images[80:])
  workdir = str(tmp_path / 'run')
  flags = ('--config=experiments/configs/xu2019.py:runlocal', f'--workdir={workdir}',
           '--config.data.dataset=arrays', f'--config.data.path={path}')
  train = lambda steps: [sys.executable, '-m', 'experiments.train', *flags,
                         f'--config.train.num_steps={steps}']
  _run(train(10))
  _run(train(20))  # Resumes at step 10.
  _, step = helpers.latest_params(workdir)
  assert step == 20
  _run([sys.executable, '-m', 'experiments.evaluate', f'--workdir={workdir}', '--num_samples=4'])
  with open(os.path.join(workdir, 'eval_test.json')) as f:
    result = json.load(f)
  assert result['num_examples'] == 16 * 10 and np.isfinite(result['nll'])  # 10 binarizations.
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(l)['step'] for l in f] == [5, 10, 15, 20]
  bad = str(tmp_path / 'bad.npz')
  np.savez(bad, x_train=np.full((8, 28, 28, 1), 1.5), x_test=np.zeros((8, 28, 28, 1)))
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.train', *flags[:-1], f'--config.data.path={bad}',
       f'--workdir={tmp_path / "bad_run"}'], cwd=ROOT, env=_env(), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert (f"Error: data.path '{bad}': x_train holds values in [1.5, 1.5]; float arrays must be in "
          '[0, 1]') in result.stderr
  assert not os.path.exists(tmp_path / 'bad_run' / 'config.json')


def test_your_own_tfds_builder_through_the_binaries(tmp_path):
  """A dataset registered by a module outside the package (--import), prepared offline from its
  manual_dir into a data_dir of its own, trained and evaluated by the binaries."""
  from tests.own_dataset import tiny_grey  # pylint: disable=g-import-not-at-top
  manual = tiny_grey.write_files(str(tmp_path / 'manual'))
  workdir = str(tmp_path / 'run')
  common = ('--import=tests.own_dataset.tiny_grey', f'--workdir={workdir}')
  _run([sys.executable, '-m', 'experiments.train', *common,
        '--config=experiments/configs/xu2019.py:runlocal', '--config.data.dataset=tiny_grey',
        f'--config.data.manual_dir={manual}', f'--config.data.data_dir={tmp_path / "tfds"}'])
  _run([sys.executable, '-m', 'experiments.evaluate', *common, '--num_samples=4'])
  with open(os.path.join(workdir, 'eval_test.json')) as f:
    result = json.load(f)
  assert result['num_examples'] == 16 * 10 and np.isfinite(result['nll'])
