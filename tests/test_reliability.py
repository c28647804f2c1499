"""Nothing lost, nothing mixed, nothing executed: exact resume, Ctrl-C, run directories, data-only
checkpoints."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.callbacks import CheckpointCallback
from agent.cli import main as cli_main
from agent.ez import EZAgent
from agent.replay import PENDING
from tests.test_agent_ez import TINY, tiny_agent
from tests.test_protocol_and_callbacks import _StopAt  # stands in for Ctrl-C at a given step

ROOT = Path(__file__).resolve().parents[1]
SETS = [x for s in TINY for x in ("--set", s)]


def _assert_same_run(a: EZAgent, b: EZAgent) -> None:
    assert a.num_timesteps == b.num_timesteps and a.learner.train_steps == b.learner.train_steps
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    for k, v in a.learner.target_model.state_dict().items():
        assert torch.equal(v, b.learner.target_model.state_dict()[k]), k
    for k in a.replay._ARRAYS:
        np.testing.assert_array_equal(getattr(a.replay, k)[: a.replay.size], getattr(b.replay, k)[: b.replay.size],
                                      err_msg=k)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def stopped_and_resumed(tmp_path, extra=()):
    """(a tiny run of 240 steps, the same run stopped at 120 and resumed from its checkpoint),
    after _assert_same_run has compared them."""
    straight = tiny_agent(seed=2, extra=extra)
    straight.learn(240)
    first = tiny_agent(seed=2, extra=extra)
    first.learn(240, callback=[_StopAt(120), CheckpointCallback(tmp_path)])
    assert first.num_timesteps == 120
    resumed = EZAgent.load(tmp_path / "resume.pt", device="cpu")
    resumed.learn(240 - resumed.num_timesteps)
    _assert_same_run(straight, resumed)
    return straight, resumed


def test_a_run_stopped_and_resumed_equals_a_run_that_never_stopped(tmp_path):
    stopped_and_resumed(tmp_path)


def test_envs_without_a_data_snapshot_close_their_open_episodes_on_resume(tmp_path, monkeypatch):
    first = tiny_agent(seed=1)
    first.learn(48, callback=CheckpointCallback(tmp_path))
    open_before = first._selfplay.prev[first._selfplay.prev >= 0]
    assert len(open_before) > 0
    monkeypatch.setattr("agent.selfplay.snapshot", lambda env: None)
    first.save_resume(tmp_path / "resume.pt")
    resumed = EZAgent.load(tmp_path / "resume.pt", device="cpu")
    with pytest.warns(UserWarning, match="cannot be saved as data"):
        resumed.learn(8)
    r = resumed.replay
    for g in open_before:  # each open episode now ends in a truncated final entry, not a dangling link
        nxt = r.next[g % r.capacity]
        assert nxt >= 0 and r.final[nxt % r.capacity] and not r.terminal[nxt % r.capacity]
    assert (r.next[open_before % r.capacity] != PENDING).all()


def test_resume_refuses_a_bare_model_and_settings_that_cannot_change(tmp_path, capsys):
    assert cli_main(["--steps", "64", "--eval-interval", "64", "--eval-episodes", "1", "--logdir", str(tmp_path),
                     "--no-progress", "--audit-episodes", "0", *SETS]) == 0
    run = tmp_path / "ez_CartPole-v1_s0"
    capsys.readouterr()
    assert cli_main(["--steps", "96", "--logdir", str(tmp_path), "--resume", str(run / "model.pt")]) == 2
    assert "without its training state" in capsys.readouterr().err
    assert cli_main(["--steps", "96", "--logdir", str(tmp_path), "--resume", str(run),
                     "--set", "net.latent_dim=32"]) == 2
    assert "cannot change net.latent_dim" in capsys.readouterr().err
    assert cli_main(["--steps", "96", "--eval-interval", "32", "--eval-episodes", "1", "--logdir", str(tmp_path),
                     "--no-progress", "--audit-episodes", "0", "--resume", str(run),
                     "--set", "search.num_simulations=3"]) == 0
    resumed = EZAgent.load(run / "resume.pt", device="cpu")
    assert resumed.num_timesteps == 96 and resumed.config.search.num_simulations == 3
    import yaml
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["resume_settings"] == {"search.num_simulations": 3}


def test_a_new_run_never_mixes_with_an_earlier_one_in_its_directory(tmp_path, capsys):
    args = ["--steps", "32", "--eval-interval", "32", "--eval-episodes", "1", "--logdir", str(tmp_path),
            "--no-progress", "--audit-episodes", "0", *SETS]
    assert cli_main(args) == 0
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert cli_main(args + ["--overwrite", "--seed", "0", "--set", "lr=2e-3"]) == 0
    run = tmp_path / "ez_CartPole-v1_s0"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert EZAgent.load(run / "model.pt").config.lr == 2e-3


def test_checkpoints_that_carry_code_are_refused(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "glasszero-checkpoint-v1", "algo": "ez", "x": RunsCode()}, path)
    with pytest.raises(ValueError, match="objects other than data"):
        EZAgent.load(path)


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), "--steps", "100000", "--eval-interval", "24",
           "--eval-episodes", "1", "--logdir", str(tmp_path), "--no-progress", "--checkpoint-interval", "100000",
           *SETS]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # wait until training is under way
        lines.append(line)
        if line.startswith("eval |"):
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + out
    assert "SIGINT" in out and "--resume" in out
    run = tmp_path / "ez_CartPole-v1_s0"
    stopped = EZAgent.load(run / "resume.pt")
    assert 24 <= stopped.num_timesteps < 100000 and (run / "model.pt").exists()
    assert not (run / "result.json").exists()  # not a finished run
    steps = stopped.num_timesteps + 8
    assert cli_main(["--steps", str(steps), "--eval-interval", "24", "--eval-episodes", "1", "--logdir",
                     str(tmp_path), "--no-progress", "--audit-episodes", "0", "--resume", str(run)]) == 0
    assert EZAgent.load(run / "resume.pt").num_timesteps == steps and (run / "result.json").exists()


def test_a_stopped_benchmark_stops_its_child_process(tmp_path):
    # benchmarks/child_process.py: a benchmark stopped with SIGTERM (a stopper script, a timeout)
    # must not leave its seed's child running beside the next measurement.
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", (
        f"import sys; sys.path.insert(0, {str(benchmarks)!r}); from child_process import run_child; "
        f"run_child([sys.executable, '-c', {child!r}])")])
    try:
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=10) != 0
        for _ in range(100):  # the kill is sent before the parent exits; the child's exit follows it
            try:
                os.kill(child_pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError(f"the child {child_pid} outlived its stopped parent")
    finally:
        parent.kill()
