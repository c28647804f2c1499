"""`train.py compare` and its summary math (agent/compare.py)."""
import csv
import json

import numpy as np
import pytest

from agent.studies import compare
from agent.cli import main

HAND_MADE = """algo,seed,env_steps,wall_clock_s,mean_return,std_return,status
ppo,0,100,1.0,10,1,ok
ppo,0,200,2.0,30,1,ok
ppo,0,400,4.0,50,1,ok
ppo,1,100,1.5,20,1,ok
ppo,1,200,2.5,20,1,ok
ppo,1,400,5.0,70,1,ok
dqn,0,100,0.5,5,0,ok
dqn,0,400,2.0,15,0,ok
dqn,1,,,,,error: RuntimeError: boom
a2c,0,,,,,not applicable: a2c does not apply to X
ez,0,100,10.0,100,0,ok
ez,0,400,40.0,200,0,ok
ez,1,100,12.0,300,0,ok
ez,1,400,44.0,400,0,ok
"""
EXTRAS = {("ppo", 0): {"parameters": 9155}, ("ppo", 1): {"parameters": 9155},
          ("ez", 0): {"parameters": 5000, "search_amplification": 1.5},
          ("ez", 1): {"parameters": 5000, "search_amplification": 2.5}}


def _summaries(tmp_path, threshold=25.0):
    path = tmp_path / "results.csv"
    path.write_text(HAND_MADE)
    return compare.summarize(compare.read_results(path), threshold, EXTRAS)


def test_summary_math_on_a_hand_made_results_csv(tmp_path):
    s = _summaries(tmp_path)
    assert list(s) == ["ppo", "dqn", "a2c", "ez"]
    ppo = s["ppo"]
    # finals 50, 70; AUC seed 0 = (20*100 + 40*200) / 300, seed 1 = (20*100 + 45*200) / 300
    assert (ppo.final_mean, ppo.final_std) == (60.0, 10.0)
    assert ppo.auc_mean == pytest.approx(35.0) and ppo.auc_std == pytest.approx(5 / 3)
    assert ppo.steps_to_threshold == [200.0, 400.0] and ppo.seeds_reached == 2
    assert ppo.wall_clock_s == 4.5 and ppo.parameters == 9155 and ppo.search_amplification is None
    dqn = s["dqn"]
    assert (dqn.final_mean, dqn.final_std, dqn.auc_mean, dqn.seeds) == (15.0, 0.0, 10.0, [0])
    assert dqn.steps_to_threshold == [None] and dqn.failures == ["seed 1: error: RuntimeError: boom"]
    assert s["a2c"].status == "not applicable: a2c does not apply to X"
    ez = s["ez"]
    assert (ez.final_mean, ez.final_std, ez.auc_mean, ez.auc_std) == (300.0, 100.0, 250.0, 100.0)
    assert ez.search_amplification == 2.0 and ez.wall_clock_s == 42.0


def test_summary_markdown_on_a_hand_made_results_csv(tmp_path):
    md = compare.render_markdown(_summaries(tmp_path), "X-v0", 25.0, steps=400, eval_episodes=20)
    assert "| ppo | 60.00 ± 10.00 | 300 ± 100 (2/2 seeds) | 35.00 ± 1.67 | 4.5 | 9,155 | — | 0,1 |" in md
    assert "| dqn | 15.00 ± 0.00 | not reached | 10.00 ± 0.00 | 2.0 | — | — | 0 |" in md
    assert "| a2c | not applicable | — | — | — | — | — | none |" in md
    assert "| ez | 300.00 ± 100.00 | 100 ± 0 (2/2 seeds) | 250.00 ± 100.00 | 42.0 | 5,000 | 2 | 0,1 |" in md
    assert "- dqn seed 1: error: RuntimeError: boom" in md
    assert "*AUC*" in md and "trapezoid" in md


def test_an_audit_at_a_ceiling_reads_ceiling_not_zero(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(HAND_MADE)
    rows = compare.read_results(path)
    ceiling = {"search_amplification": None, "ceiling": True}
    s = compare.summarize(rows, 25.0, {("ez", 0): ceiling, ("ez", 1): ceiling})
    assert s["ez"].search_amplification is None and s["ez"].ceiling_seeds == 2
    md = compare.render_markdown(s, "X-v0", 25.0)
    assert "| 42.0 | — | ceiling | 0,1 |" in md and "*ceiling*" in md
    s = compare.summarize(rows, 25.0, {("ez", 0): ceiling, ("ez", 1): {"search_amplification": 0.5}})
    assert s["ez"].search_amplification == 0.5  # the mean leaves the ceiling seed out, and says so
    assert "| 0.5 (1 at ceiling) | 0,1 |" in compare.render_markdown(s, "X-v0", 25.0)


def test_normalized_auc_and_threshold_edge_cases():
    assert compare.normalized_auc([(500, 5.0, 7.0)]) == 7.0
    assert compare.steps_to_threshold([(1, 0, 3.0)], None) is None
    x, mean, std = compare.mean_curve([[(0, 0.0), (2, 2.0)], [(1, 1.0), (3, 3.0)]])
    np.testing.assert_allclose(x, [1, 2])
    np.testing.assert_allclose(mean, [1.0, 2.0])
    np.testing.assert_allclose(std, [0.0, 0.0])


def _compare(out, *extra, algos="ppo,dqn", seeds="0", env="CartPole-v1"):
    argv = ["compare", "--env", env, "--algos", algos, "--seeds", seeds, "--steps", "128",
            "--eval-interval", "64", "--eval-episodes", "2", "--out", str(out), *extra]
    assert main(argv) == 0
    with (out / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_tiny_comparison_writes_results_summary_and_curves(tmp_path):
    rows = _compare(tmp_path, seeds="0,1")
    assert list(rows[0]) == compare.COLUMNS
    assert {(r["algo"], r["seed"]) for r in rows} == {(a, s) for a in ("ppo", "dqn") for s in ("0", "1")}
    assert all(r["status"] == "ok" for r in rows)
    assert sorted({int(r["env_steps"]) for r in rows}) == [64, 128]
    md = (tmp_path / "summary.md").read_text()
    assert "| ppo |" in md and "| dqn |" in md and "steps to return ≥ 475" in md
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert (tmp_path / "runs" / "ppo_CartPole-v1_s1" / "model.zip").exists()


def test_resume_skips_finished_runs(tmp_path, monkeypatch):
    first = _compare(tmp_path, algos="a2c")

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("agent.cli.compare.train_run", must_not_train)
    assert _compare(tmp_path, "--resume", algos="a2c") == first


def test_not_applicable_algo_is_reported_not_crashed(tmp_path):
    rows = _compare(tmp_path, algos="dqn", env="Pendulum-v1")
    assert rows[0]["status"].startswith("not applicable: dqn does not apply to Pendulum-v1")
    assert "| dqn | not applicable |" in (tmp_path / "summary.md").read_text()


def test_crashing_run_is_recorded_and_the_rest_go_on(tmp_path, monkeypatch):
    from agent.cli import compare as cli_compare
    real = cli_compare.train_run

    def crash_dqn(algo, *args, **kwargs):
        if algo == "dqn":
            raise RuntimeError("boom")
        return real(algo, *args, **kwargs)

    monkeypatch.setattr(cli_compare, "train_run", crash_dqn)
    rows = _compare(tmp_path)
    assert [r["status"] for r in rows if r["algo"] == "dqn"] == ["error: RuntimeError: boom"]
    assert all(r["status"] == "ok" for r in rows if r["algo"] == "ppo")
    assert "RuntimeError: boom" in (tmp_path / "runs" / "dqn_CartPole-v1_s0" / "error.log").read_text()
    assert "- dqn seed 0: error: RuntimeError: boom" in (tmp_path / "summary.md").read_text()


def test_audit_result_fills_search_amplification(tmp_path):
    _compare(tmp_path, algos="ppo")
    (tmp_path / "runs" / "ppo_CartPole-v1_s0" / "audit.json").write_text(json.dumps({"search_amplification": 1.25}))
    _compare(tmp_path, "--resume", algos="ppo")
    assert "| 1.25 | 0 |" in (tmp_path / "summary.md").read_text()


def test_parallel_workers_give_the_same_rows_as_sequential(tmp_path):
    seq = _compare(tmp_path / "seq", algos="a2c", seeds="0,1")
    par = _compare(tmp_path / "par", "--workers", "2", algos="a2c", seeds="0,1")
    key = lambda r: (r["algo"], r["seed"], r["env_steps"])  # noqa: E731
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k != "wall_clock_s"} for r in rows), key=key)  # noqa: E731
    assert strip(seq) == strip(par)


def test_ez_runs_are_audited_and_fill_search_amplification(tmp_path):
    rows = _compare(tmp_path, algos="ez")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    audit = json.loads((tmp_path / "runs" / "ez_CartPole-v1_s0" / "audit.json").read_text())
    amp = audit["search_amplification"]
    md = (tmp_path / "summary.md").read_text()
    ez_row = next(line for line in md.splitlines() if line.startswith("| ez |"))
    assert ez_row.split("|")[7].strip() == f"{amp:.3g}"


def test_no_audit_skips_compares_audit(tmp_path):
    _compare(tmp_path, "--no-audit", algos="ez")
    run = tmp_path / "runs" / "ez_CartPole-v1_s0"
    assert not (run / "audit.json").exists()
    ez_row = next(line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| ez |"))
    assert not (run / "audit_train.json").exists()  # compare asks training runs for no audit of their own
    assert ez_row.split("|")[7].strip() == "—"


def test_ez_on_a_continuous_env_is_not_applicable(tmp_path):
    rows = _compare(tmp_path, algos="ez,ppo", env="Pendulum-v1")
    assert rows[0]["status"].startswith("not applicable: ez does not apply to Pendulum-v1")
    assert all(r["status"] == "ok" for r in rows[1:])
