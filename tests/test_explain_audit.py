"""`explain` and the search-amplification audit on the trained fixtures (tests/fixtures/)."""
import json

import numpy as np
import pytest

from agent.studies import audit as audit_module
from agent.studies.audit import (DEFAULT_SWEEP, QUICK_SWEEP, WARN_BELOW, amplification, format_audit, run_audit,
                                 training_audit)
from agent.cli import main as cli_main
from agent.studies.explain import explain, format_explanation
from planners.objectives import ObservationValue, Penalized
from tests.test_objective_swap import FIXTURES, distance_from_left, load_fixture, prefer_right

MIDDLE = np.eye(8, dtype=np.float32)[4]  # Corridor: position 0.0 (the middle cell), one-hot of cell 3
ROW_KEYS = {"action", "visits", "prior", "predicted_reward", "edge_reward", "edge_reward_parts",
            "discounted_child_value", "q"}


@pytest.fixture()
def corridor():
    return load_fixture("corridor")


def test_explain_root_table_principal_variation_and_objective(corridor):
    d = explain(corridor, MIDDLE)
    assert d["objective"] == corridor.objective.describe() and d["prior_setting"] == "learned"
    assert [a["action"] for a in d["actions"]] == [0, 1] and all(set(a) == ROW_KEYS for a in d["actions"])
    assert sum(a["visits"] for a in d["actions"]) == corridor.config.search.num_simulations
    assert d["action"] == 0  # trained to walk to the rewarded left end
    assert abs(sum(a["prior"] for a in d["actions"]) - 1) < 1e-6
    for a in d["actions"]:
        if a["visits"]:
            assert a["q"] == pytest.approx(a["edge_reward"] + a["discounted_child_value"], abs=1e-6)
    pv = d["principal_variation"]
    assert pv and pv[0]["action"] == d["action"] and [s["depth"] for s in pv] == list(range(1, len(pv) + 1))
    # The decoder's predicted observations walk left, one cell (1/3 of the scaled position) a step,
    # to the rewarded end three steps away. (Past it the model imagines on: it has no terminal flag.)
    positions = [s["predicted_observation"][0] for s in pv[:3]]
    assert len(pv) >= 3 and len(pv[0]["predicted_observation"]) == 8
    assert positions == pytest.approx([-1 / 3, -2 / 3, -1.0], abs=0.1)
    text = format_explanation(d)
    for needle in ("objective: Learned", "principal variation", "predicted obs", "visits", "prior", "Q",
                   "capacity", "decoder"):
        assert needle in text, needle
    json.dumps(d, allow_nan=False)  # standard JSON: unvisited actions are None, not nan


def test_explain_under_a_swapped_objective_shows_its_parts(corridor):
    corridor.set_objective(Penalized(ObservationValue(prefer_right), distance_from_left, 0.5))
    corridor.set_prior("uniform")
    d = explain(corridor, MIDDLE)
    assert d["prior_setting"] == "uniform" and d["objective"].startswith("Penalized(tests.test_objective_swap:distance_from_left")
    parts = d["actions"][1]["edge_reward_parts"]
    assert list(parts) == ["ObservationValue", "-0.5 * tests.test_objective_swap:distance_from_left"]
    # ObservationValue puts nothing on edges; the penalty of stepping right to position 1/3 is -0.5 * 4/3.
    assert parts["ObservationValue"] == 0.0
    assert parts["-0.5 * tests.test_objective_swap:distance_from_left"] == pytest.approx(-0.5 * 4 / 3, abs=0.1)
    assert "edge reward parts" in format_explanation(d)


def test_explain_cli_text_and_json(capsys):
    ckpt = str(FIXTURES / "corridor_ez.pt")
    assert cli_main(["explain", "--checkpoint", ckpt, "--obs", json.dumps(MIDDLE.tolist()), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["observation"] == MIDDLE.tolist() and d["action"] == 0 and d["has_decoder"]
    assert cli_main(["explain", "--checkpoint", ckpt, "--value", "tests.test_objective_swap:prefer_right",
                     "--prior", "uniform"]) == 0
    text = capsys.readouterr().out
    assert "objective: ObservationValue(tests.test_objective_swap:prefer_right" in text and "chosen action 1" in text
    assert cli_main(["explain", "--checkpoint", ckpt, "--obs", "[0, 1]"]) == 2
    assert "--obs has shape (2,)" in capsys.readouterr().err


def test_amplification_definition():
    assert amplification(300.0, 100.0) == 2.0  # (c - a) / max(|a|, 1)
    assert amplification(0.5, 0.0) == 0.5  # the denominator is floored at 1
    assert amplification(-50.0, -100.0) == 0.5 and amplification(80.0, 100.0) == -0.2


def test_audit_on_the_corridor_fixture(corridor, tmp_path):
    out = tmp_path / "audit.json"
    report = run_audit(corridor, episodes=3, out=out)
    r = {k: v["mean"] for k, v in report["returns"].items()}
    assert set(r) == {"prior", "greedy", "search"} and all(len(v["returns"]) == 3 for v in report["returns"].values())
    assert r["search"] == 1.0  # walks to the rewarded end from the middle
    assert report["search_amplification"] == pytest.approx((r["search"] - r["prior"]) / max(abs(r["prior"]), 1))
    assert report["greedy_amplification"] == pytest.approx((r["search"] - r["greedy"]) / max(abs(r["greedy"]), 1))
    # The prior alone also walks left: nothing for the search to add, so the audit warns.
    assert r["prior"] == 1.0 and report["search_amplification"] == 0.0 < WARN_BELOW
    assert "networks may be doing the optimizing" in report["warning"]
    assert [c["network"] for c in report["capacity"]][:3] == ["representation", "dynamics", "prediction"]
    assert json.loads(out.read_text())["search_amplification"] == 0.0
    text = format_audit(report)
    for needle in ("(a) policy prior argmax", "(b) one-step greedy", "(c) full search", "search amplification",
                   "WARNING", "representation"):
        assert needle in text


def test_audit_cli_on_cartpole_writes_audit_json_only_when_asked(tmp_path, capsys):
    ckpt = tmp_path / "run" / "model.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes((FIXTURES / "cartpole_ez.pt").read_bytes())
    assert cli_main(["audit", "--checkpoint", str(ckpt), "--episodes", "2", "--sweep", "0,1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert not (ckpt.parent / "audit.json").exists()
    assert {"search_amplification", "greedy_amplification", "definition", "warning", "capacity_report",
            "returns", "objective"} <= set(report)
    assert report["returns"]["search"]["mean"] > 60
    assert cli_main(["audit", "--checkpoint", str(ckpt), "--episodes", "2", "--no-sweep", "--write"]) == 0
    assert "search amplification" in capsys.readouterr().out
    assert json.loads((ckpt.parent / "audit.json").read_text())["episodes"] == 2


@pytest.fixture()
def cartpole():
    return load_fixture("cartpole")


def test_audit_sweep_and_uniform_prior(cartpole):
    own = cartpole.config.search
    report = run_audit(cartpole, episodes=2, simulations=[3, 0, own.num_simulations, 1, 3])
    r = report["returns"]
    assert [row["simulations"] for row in report["sweep"]] == [0, 1, 3, own.num_simulations]
    by_sims = {row["simulations"]: row for row in report["sweep"]}
    assert by_sims[0]["returns"] == r["prior"]["returns"] and by_sims[0]["mean"] == r["prior"]["mean"]
    assert by_sims[own.num_simulations]["returns"] == r["search"]["returns"]
    assert cartpole.config.search is own  # the sweep and the uniform prior leave the agent's settings as they were
    cartpole.set_prior("uniform")
    uniform = audit_module.evaluate(audit_module.search_policy(cartpole), "CartPole-v1", cartpole.seed, 2)
    assert report["uniform_prior"]["returns"] == uniform.returns.tolist() and len(uniform.returns) == 2
    # CartPole-v1 declares reward_threshold 475; the fixture's prior is far below it: no ceiling.
    assert report["reward_threshold"] == 475.0 and report["ceiling"] is False and report["ceiling_note"] is None
    assert report["search_amplification"] == pytest.approx(amplification(r["search"]["mean"], r["prior"]["mean"]))
    text = format_audit(report)
    assert "(d) full search, uniform prior" in text and "return against search simulations" in text
    assert "CEILING" not in text and "transfer" not in text
    assert list(DEFAULT_SWEEP) == [0, 1, 2, 5, 10, 25, 50] and set(QUICK_SWEEP) <= set(DEFAULT_SWEEP)


def test_a_prior_at_the_reward_threshold_is_reported_as_a_ceiling(cartpole):
    # The fixture's prior earns about 116; a threshold of 50 stands in for CartPole's 475 reached.
    report = run_audit(cartpole, episodes=2, simulations=(), reward_threshold=50.0, transfer_median=42.0)
    r = {k: v["mean"] for k, v in report["returns"].items()}
    assert r["prior"] >= 50 and r["greedy"] >= 50
    assert report["ceiling"] is True and report["search_amplification"] is None
    assert report["greedy_amplification"] is None  # greedy reaches the threshold too
    assert report["warning"] is None  # not "the search adds nothing": a ceiling
    note = report["ceiling_note"]
    assert "reward threshold (50" in note and "null, not 0" in note and "uniform prior" in note
    assert report["sweep"] == [] and report["transfer_median"] == 42.0
    json.dumps(report, allow_nan=False)
    text = format_audit(report)
    assert "search amplification: ceiling (not measured)" in text and "CEILING: the policy prior alone" in text
    assert "transfer suite: median 42 %" in text and "return against search simulations" not in text
    below = run_audit(cartpole, episodes=2, simulations=(), uniform_prior=False, reward_threshold=1000.0)
    assert below["ceiling"] is False and below["search_amplification"] is not None
    assert below["uniform_prior"] is None and "transfer_median" not in below


class RecordingLogger:
    def __init__(self):
        self.values, self.dumped = {}, None

    def record(self, key, value):
        self.values[key] = value

    def dump(self, step):
        self.dumped = step


def test_training_audit_uses_the_short_sweep_and_logs_a_ceiling_as_such(cartpole, tmp_path, monkeypatch):
    monkeypatch.setattr(audit_module, "_reward_threshold", lambda env_id: 50.0)
    logger, lines = RecordingLogger(), []
    report = training_audit(cartpole, 2, tmp_path, logger, write=lines.append)
    assert [row["simulations"] for row in report["sweep"]] == list(QUICK_SWEEP)
    assert report["ceiling"] is True and "audit/search_amplification" not in logger.values
    assert logger.values["audit/ceiling"] == 1.0 and "audit/return_uniform_prior" in logger.values
    assert {f"audit/return_sims_{n}" for n in QUICK_SWEEP} <= set(logger.values)
    assert "search amplification ceiling (not measured)" in lines[0] and "CEILING:" in lines[0]
    assert json.loads((tmp_path / "audit_train.json").read_text())["search_amplification"] is None


def test_audit_cli_sweep_flags(capsys):
    ckpt = str(FIXTURES / "cartpole_ez.pt")
    assert cli_main(["audit", "--checkpoint", ckpt, "--episodes", "2", "--sweep", "2,0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["simulations"] for row in report["sweep"]] == [0, 2] and report["uniform_prior"] is not None
    assert cli_main(["audit", "--checkpoint", ckpt, "--episodes", "2", "--no-sweep", "--threshold", "50"]) == 0
    text = capsys.readouterr().out
    assert "return against search simulations" not in text and "CEILING" in text


def test_explain_shows_the_predicted_observations_the_objective_reads(corridor):
    # An objective over observations reads them anchored at the real root (planners/anchor.py):
    # explain's principal variation shows those, not the raw decoding.
    import torch

    corridor.set_objective(ObservationValue(prefer_right))
    d = explain(corridor, MIDDLE)
    assert d["anchored"] and "anchored at the real one" in format_explanation(d)
    model = corridor.model
    with torch.no_grad():
        root = model.initial_inference(MIDDLE.reshape(1, -1))
        offset = MIDDLE - model.decode(root.latent)[0].numpy()
        first = model.recurrent_inference(root.latent, torch.tensor([d["principal_variation"][0]["action"]]))
        raw = model.decode(first.latent)[0].numpy()
    assert d["principal_variation"][0]["predicted_observation"] == pytest.approx(raw + offset, abs=1e-4)  # 4 decimals
    assert np.abs(offset).max() > 1e-3  # the decoder is off at the root: anchoring shows
    corridor.set_objective(ObservationValue(prefer_right, anchor=False))
    assert not explain(corridor, MIDDLE)["anchored"]


def test_the_audits_prior_alone_sees_what_the_search_shows_the_model(corridor, monkeypatch):
    # An objective may show the model another observation than the real one (Objective.model_view,
    # e.g. a goal held out); the prior-alone policy the search is measured against must see it too.
    from agent.studies.audit import prior_policy

    left = np.eye(8, dtype=np.float32)[1]
    left[0] = -1.0  # cell 0

    class ShowsLeft(ObservationValue):
        def model_view(self, obs):
            return np.repeat(left[None], len(obs), axis=0)

    seen = []
    inference = corridor.model.initial_inference
    monkeypatch.setattr(corridor.model, "initial_inference", lambda obs: seen.append(np.asarray(obs)) or inference(obs))
    corridor.set_objective(ShowsLeft(prefer_right))
    prior_policy(corridor)(np.stack([MIDDLE, MIDDLE]))
    np.testing.assert_array_equal(seen[-1], np.stack([left, left]))
