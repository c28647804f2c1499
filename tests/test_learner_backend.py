"""The learner's two backends (config.learner_backend): the compiled unroll computes the eager
one's losses and gradients, `auto` compiles only where it pays, and a diverged network is caught
once per step, before any weight moves."""
import numpy as np
import pytest
import torch

from agent.config import AgentConfig
from agent.learner import LEARNER_COMPILE_MIN_STEPS
from tests.test_agent_ez import tiny_agent


def _losses_and_grads(learner, loss_fn, batch):
    model = learner.model
    model.train()
    model.zero_grad(set_to_none=True)
    with model.unchecked_outputs():
        loss, value_error = loss_fn(batch)
    sum((v * batch.weights).mean() for v in loss.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.eval()
    return {k: v.detach() for k, v in loss.items()}, value_error.detach(), grads


def test_the_compiled_unroll_computes_the_eager_losses_and_gradients():
    # Terminal head and decoder on: every loss the unroll has.
    agent = tiny_agent(extra=["net.terminal_head=true", "learner_backend=eager"])
    agent.learn(96)
    learner = agent.learner
    batch = learner.make_batch(agent.replay, agent.objective, np.random.default_rng(1), agent.num_timesteps, 0.5)
    eager = _losses_and_grads(learner, learner.losses, batch)
    compiled = _losses_and_grads(learner, torch.compile(learner.losses, fullgraph=True), batch)
    assert set(eager[0]) == set(compiled[0]) >= {"value", "policy", "reward", "consistency", "terminal",
                                                 "reconstruction"}
    for name in eager[0]:
        torch.testing.assert_close(compiled[0][name], eager[0][name], rtol=1e-4, atol=1e-5, msg=name)
    # The root value error (the new priority) goes through h^-1 in float32, which near 0 loses about
    # 1e-4 to cancellation (tests/test_compiled.py), fused or not in other orders: held to that.
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-4, atol=1e-3)
    assert set(eager[2]) == set(compiled[2])
    for name in eager[2]:
        torch.testing.assert_close(compiled[2][name], eager[2][name], rtol=1e-3, atol=1e-5, msg=name)


def test_auto_compiles_long_runs_of_mlp_models_on_the_cpu_only():
    learner = tiny_agent().learner
    assert learner.config.learner_backend == "auto"
    learner.planned_steps = LEARNER_COMPILE_MIN_STEPS - 1
    assert not learner.compiled  # a short run would spend more compiling than it saves
    learner.planned_steps = LEARNER_COMPILE_MIN_STEPS
    assert learner.compiled
    assert tiny_agent(extra=["learner_backend=eager"]).learner.compiled is False
    short = tiny_agent(extra=["learner_backend=compiled"]).learner
    assert short.planned_steps < LEARNER_COMPILE_MIN_STEPS and short.compiled


def test_a_diverged_network_stops_the_learner_before_any_weight_moves():
    agent = tiny_agent(extra=["learner_backend=eager"])
    agent.learn(72)
    learner = agent.learner
    batch = learner.make_batch(agent.replay, agent.objective, np.random.default_rng(0), agent.num_timesteps, 0.5)
    with torch.no_grad():
        next(learner.model.prediction.parameters()).fill_(float("nan"))
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    steps = learner.train_steps
    with pytest.raises(FloatingPointError, match="diverged"):
        learner.train_step(batch)
    assert learner.train_steps == steps
    for k, v in learner.model.state_dict().items():
        assert torch.equal(v, before[k]) or torch.isnan(before[k]).any(), k
    assert learner.model.check_outputs  # the per-call checks are back on for the search


def test_an_unknown_learner_backend_is_refused_by_name():
    with pytest.raises(ValueError, match="learner_backend must be 'auto', 'compiled' or 'eager'"):
        AgentConfig(learner_backend="jit")


def _failing_compile(fn, **kwargs):
    def run(*args):
        raise RuntimeError("no C++ compiler here")
    return run


def test_a_failed_compile_falls_back_under_auto_and_is_refused_by_name_when_asked_for(monkeypatch):
    monkeypatch.setattr(torch, "compile", _failing_compile)
    agent = tiny_agent(extra=["learner_backend=eager"])
    agent.learn(72)
    batch = agent.learner.make_batch(agent.replay, agent.objective, np.random.default_rng(0), agent.num_timesteps, 0.5)
    auto = tiny_agent().learner
    auto.planned_steps = LEARNER_COMPILE_MIN_STEPS
    with pytest.warns(RuntimeWarning, match="runs eager"):
        auto.train_step(batch)
    assert auto.compiled is False and auto.train_steps == 1
    forced = tiny_agent(extra=["learner_backend=compiled"]).learner
    with pytest.raises(RuntimeError, match="learner_backend=eager"):
        forced.train_step(batch)


@pytest.mark.slow  # three compilations of the unroll; the eager path has the fast test (test_reliability)
def test_a_compiled_run_stopped_and_resumed_equals_one_that_never_stopped(tmp_path):
    from tests.test_reliability import stopped_and_resumed

    straight, resumed = stopped_and_resumed(tmp_path, extra=["learner_backend=compiled"])
    assert straight.learner.compiled and resumed.learner.compiled


def test_train_mode_is_switched_on_for_the_step_only_where_a_module_depends_on_it():
    agent = tiny_agent(extra=["learner_backend=eager"])
    agent.learn(72)
    seen = []
    hook = agent.model.representation.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    batch = agent.learner.make_batch(agent.replay, agent.objective, np.random.default_rng(0), agent.num_timesteps, 0.5)
    seen.clear()
    agent.learner.train_step(batch)
    assert seen and not any(seen)  # no dropout or batch statistics: the mode is left as it is
    hook.remove()

    agent = tiny_agent(extra=["learner_backend=eager"])
    agent.model.representation.add_module("dropout", torch.nn.Dropout(0.0))  # a mode-dependent module
    learner = type(agent.learner)(agent.model, agent.config)
    agent.learn(72)
    batch = learner.make_batch(agent.replay, agent.objective, np.random.default_rng(0), agent.num_timesteps, 0.5)
    agent.model.representation.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    seen.clear()
    learner.train_step(batch)
    assert seen and all(seen) and not agent.model.training  # trained in train mode, back to eval after
