"""Mixed precision (NetConfig.precision), the GPU path's arithmetic, run here on the CPU through the
same code: torch.autocast around the networks, float32 outputs, the learner's gradient scaler for
float16, and no compiled forward for a 16-bit model."""
import numpy as np
import pytest
import torch

from nets.config import NetConfig
from nets.model import build_model, compute_dtype
from planners import fused
from planners.objectives import Learned
from tests.test_agent_ez import tiny_agent

SMALL_CONV = dict(family="conv", conv_channels=16, conv_blocks=1, projection_hidden=32, projection_dim=32,
                  projection_head_hidden=16)


def _twin(precision: str):
    """A float32 conv model and one with the same weights computing in `precision`."""
    torch.manual_seed(0)
    full = build_model((3, 32, 32), 4, NetConfig(**SMALL_CONV), "cpu").eval()
    mixed = build_model((3, 32, 32), 4, NetConfig(**SMALL_CONV, precision=precision), "cpu").eval()
    mixed.load_state_dict(full.state_dict())
    return full, mixed


@pytest.mark.parametrize("precision,dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_a_16_bit_forward_gives_float32_outputs_within_its_rounding_of_float32(precision, dtype):
    full, mixed = _twin(precision)
    assert full.compute_dtype is None and mixed.compute_dtype is dtype
    obs = torch.randint(0, 256, (8, 3, 32, 32), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    action = torch.arange(8) % 4
    with torch.no_grad():
        a, b = full.initial_inference(obs), mixed.initial_inference(obs)
        a2, b2 = full.recurrent_inference(a.latent, action), mixed.recurrent_inference(b.latent, action)
        frames = full.decode(a.latent), mixed.decode(b.latent)
        projected = full.project(a.latent, False), mixed.project(b.latent, False)
    # Each 16-bit operation rounds by up to eps / 2 relative (torch.finfo's eps: 2^-7 in bfloat16,
    # 2^-10 in float16); over these few layers the errors stayed within 4 eps of each output's
    # scale (16 allowed).
    eps = torch.finfo(dtype).eps
    for x, y in [(a.latent, b.latent), (a.value, b.value), (a.policy_logits, b.policy_logits),
                 (a2.latent, b2.latent), (a2.reward, b2.reward), (a2.value, b2.value), frames, projected]:
        assert y.dtype == torch.float32
        assert float((y - x).abs().max()) <= 16 * eps * float(x.abs().max()), (tuple(x.shape), precision)
    # The 16-bit arithmetic did happen: not the float32 result to the last bit.
    assert not torch.equal(b.latent, a.latent)
    assert all(p.dtype == torch.float32 for p in mixed.parameters())


def test_auto_is_float32_off_a_gpu_and_the_atari_preset_asks_for_it(monkeypatch):
    # On a GPU: bfloat16 where the hardware has it (compute capability 8, Ampere, on), float16 on
    # older GPUs, where torch would report an emulated bfloat16 as supported.
    cuda = torch.device("cuda", 0)
    for capability, dtype in [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert compute_dtype("auto", cuda) is dtype
    cpu = torch.device("cpu")
    assert compute_dtype("auto", cpu) is None and compute_dtype("float32", cpu) is None
    assert compute_dtype("bfloat16", cpu) is torch.bfloat16
    assert NetConfig.atari().precision == "auto" and NetConfig().precision == "float32"
    assert build_model((3, 32, 32), 4, NetConfig(**SMALL_CONV, precision="auto"), "cpu").compute_dtype is None


def test_an_unknown_precision_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match=r"net\.precision"):
        NetConfig(precision="half")


def test_a_16_bit_model_searches_through_torch_not_the_compiled_float32_forward():
    # The search must evaluate the function the learner trains.
    full = tiny_agent().model
    mixed = tiny_agent(extra=["net.precision=bfloat16"]).model
    assert fused.fused_program(full, Learned(), "auto") is not None
    assert fused.fused_program(mixed, Learned(), "auto") is None


def test_a_bfloat16_learner_lowers_its_losses_with_float32_weights():
    agent = tiny_agent(extra=["net.precision=bfloat16", "learner_backend=eager"])
    agent.learn(200, progress_bar=False)
    learner = agent.learner
    assert not learner.scaler.is_enabled()  # bfloat16 has float32's range: nothing to scale
    batch = learner.make_batch(agent.replay, agent.objective, np.random.default_rng(0), agent.num_timesteps, 1.0)

    def fixed_loss():
        with torch.no_grad():
            loss, _ = learner.losses(batch)
        return {k: float(v.mean()) for k, v in loss.items()}

    before = fixed_loss()
    for _ in range(60):
        learner.train_step(batch)
    after = fixed_loss()
    for k in ("value", "reward", "policy"):
        assert after[k] < before[k], (k, before, after)
    assert all(p.dtype == torch.float32 for p in agent.model.parameters())


def test_a_float16_learner_scales_its_loss_and_resumes_with_the_same_scale(tmp_path):
    from agent.ez import EZAgent
    agent = tiny_agent(extra=["net.precision=float16", "learner_backend=eager"])
    agent.learn(120, progress_bar=False)
    learner = agent.learner
    assert learner.scaler.is_enabled() and learner.train_steps > 0
    assert all(np.isfinite(v) for k, v in agent._last_stats.items() if k.startswith("loss/"))
    assert agent._last_stats["train/grad_scale"] == learner.scaler.get_scale()
    learner.scaler.update(new_scale=1024.0)  # not the initial scale, which a fresh scaler would have
    again = EZAgent.load(agent.save_resume(tmp_path / "resume.pt"), device="cpu")
    assert again.learner.scaler.is_enabled() and again.learner.scaler.get_scale() == 1024.0


def test_a_16_bit_conv_model_builds_the_same_trees_on_the_device_path(monkeypatch):
    """What a GPU runs: the latent pool off the host (forced here on the CPU, as in
    tests/test_planner_search.py) with the networks in bfloat16, for both root rules."""
    from planners import buffers
    from planners.config import SearchConfig
    from planners.policies import plan
    _, mixed = _twin("bfloat16")
    obs = np.random.default_rng(2).integers(0, 256, (4, 3, 32, 32)).astype(np.uint8)

    def search(algorithm):
        return plan(mixed, Learned(), obs, SearchConfig(num_simulations=24, algorithm=algorithm),
                    rng=np.random.default_rng(0), add_noise=True)

    host = {a: search(a) for a in ("puct", "gumbel")}
    monkeypatch.setattr(buffers, "on_host", lambda device: False)
    for algorithm, a in host.items():
        b = search(algorithm)
        assert a.tree.num_nodes.min() > 10
        np.testing.assert_array_equal(a.tree.children, b.tree.children)
        np.testing.assert_array_equal(a.tree.visit_count, b.tree.visit_count)
        np.testing.assert_array_equal(a.tree.value_sum, b.tree.value_sum)
        np.testing.assert_array_equal(a.action, b.action)
