"""Calibration: thresholds for a strong-model share, lambda / targets for N models,
the N-model policy as a table, and `interlock calibrate` end to end."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest
from typer.testing import CliRunner

from interlock.catalog import Catalog, Deployment
from interlock.cli.main import app
from interlock.routing.calibrate import (
    calibrate_lambda,
    calibrate_target,
    calibrate_threshold,
    load_prompts,
    threshold_for_share,
)
from interlock.routing.data import OutcomeTable
from interlock.routing.features import HashedNgramFeaturizer
from interlock.routing.learned import make_router
from interlock.routing.policy import parse_router_alias
from interlock.routing.quality_policy import (
    best_tradeoff,
    cheapest_reaching,
    choose_group,
    choose_tradeoff,
)


def _printed_share(scores: np.ndarray, share: float) -> tuple[float, str]:
    c = calibrate_threshold(scores, share)
    assert parse_router_alias(f"router-mf-{c.shown}") == ("mf", float(c.shown))
    assert "e" not in c.shown
    return float(np.mean(scores >= float(c.shown))), c.shown


@pytest.mark.parametrize("scale", [1.0, 1e-5, 1e-9])
@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5, 0.7, 1.0])
def test_the_printed_threshold_gives_the_reported_share(scale, share) -> None:
    # Scores packed closer than 6 significant digits can tell apart, and tiny ones.
    scores = 0.55 + np.random.default_rng(1).random(1000) * 1e-4 * scale
    if scale == 1e-9:
        scores = np.random.default_rng(1).random(300) * 1e-5
    reached, _ = _printed_share(scores, share)
    assert reached == pytest.approx(share, abs=1e-9)
    assert calibrate_threshold(scores, share).strong_share == reached


def test_tied_scores_give_the_nearest_reachable_share_and_say_so() -> None:
    scores = np.full(200, 0.5)
    for share, expected in ((0.0, 0.0), (0.3, 0.0), (0.6, 1.0), (1.0, 1.0)):
        c = calibrate_threshold(scores, share)
        assert c.strong_share == expected
        assert _printed_share(scores, share)[0] == expected
        assert (c.note is not None) == (share != expected), c.note
    assert "unreachable" in (calibrate_threshold(scores, 0.3).note or "")


@pytest.mark.parametrize(("share", "expected"), [(0.0, 0.0), (0.3, 0.3), (0.5, 0.5), (1.0, 1.0)])
def test_threshold_sends_the_requested_share(share, expected) -> None:
    scores = np.random.default_rng(0).random(1000)
    t = threshold_for_share(scores, share)
    assert np.mean(scores >= t) == pytest.approx(expected, abs=1e-9)


def test_calibrated_threshold_holds_on_held_out_prompts() -> None:
    rng = np.random.default_rng(5)
    words = [
        "apple",
        "river",
        "stone",
        "cloud",
        "music",
        "table",
        "garden",
        "window",
        "letter",
        "bridge",
    ]

    def prompts(n: int, seed: int) -> list[str]:
        r = np.random.default_rng(seed)
        return [
            " ".join(r.choice(words, 6)) + (" quantum" if r.random() < 0.4 else "")
            for _ in range(n)
        ]

    train = prompts(300, 1)
    hard = np.array(["quantum" in p for p in train])
    scores = np.column_stack([np.ones(300), np.where(hard, rng.random(300) < 0.2, 1.0)])
    router = make_router("knn", k=10)
    router.fit(
        OutcomeTable(train, ["strong", "weak"], scores),
        HashedNgramFeaturizer(n_features=2**12, dim=16),
    )
    calib, held = prompts(400, 2), prompts(400, 3)
    c = calibrate_threshold(router.win_prob(calib, "strong", "weak"), 0.3)
    achieved = np.mean(router.win_prob(held, "strong", "weak") >= c.value)
    assert abs(achieved - 0.3) < 0.08


# quality per model, costs per 1k requests, target / lambda, expected choice
POLICY_TABLE = [
    ([0.9, 0.7, 0.5], [Decimal(30), Decimal(5), Decimal(1)], 0.6, None, 1),
    ([0.9, 0.7, 0.5], [30, 5, 1], 0.4, None, 2),
    ([0.9, 0.7, 0.5], [30, 5, 1], 0.95, None, 0),  # none reaches: the best
    ([0.9, 0.9, 0.5], [30, 5, 1], 0.85, None, 1),  # equal quality: the cheaper
    ([0.9, 0.7, 0.5], [30, 5, 1], None, 0.0, 0),  # lambda 0: pure quality
    ([0.9, 0.7, 0.5], [30, 5, 1], None, 0.01, 1),  # 0.9-0.3 < 0.7-0.05 > 0.5-0.01
    ([0.9, 0.7, 0.5], [30, 5, 1], None, 1.0, 2),
    ([0.8, 0.8], [2.0, 2.0], None, 0.1, 0),  # full tie: the first
]


@pytest.mark.parametrize(("quality", "costs", "target", "lam", "expected"), POLICY_TABLE)
def test_n_model_policy_table(quality, costs, target, lam, expected) -> None:
    if target is not None:
        assert cheapest_reaching(quality, costs, target) == expected
    else:
        assert best_tradeoff(quality, costs, lam) == expected


def test_policy_refuses_mismatched_costs() -> None:
    with pytest.raises(ValueError):
        best_tradeoff([0.5, 0.6], [1.0], 0.1)


def test_lambda_and_target_for_a_share_or_a_budget() -> None:
    rng = np.random.default_rng(0)
    q = np.column_stack(
        [rng.uniform(0.6, 1.0, 500), rng.uniform(0.3, 0.9, 500), rng.uniform(0.0, 0.8, 500)]
    )
    costs = [30.0, 5.0, 1.0]
    c = calibrate_lambda(q, costs, strong_share=0.3)
    assert c.kind == "lambda" and abs(c.strong_share - 0.3) < 0.01
    assert np.mean(choose_tradeoff(q, costs, c.value) == 0) == pytest.approx(c.strong_share)
    b = calibrate_lambda(q, costs, budget_per_1k=8.0)
    assert b.cost_per_1k is not None and 7.0 < b.cost_per_1k <= 8.0
    t = calibrate_target(q, costs, strong_share=0.2)
    assert t.kind == "target" and abs(t.strong_share - 0.2) < 0.02


def test_choose_group_prices_groups_from_the_catalog() -> None:
    def dep(group: str, model: str, price: str) -> Deployment:
        return Deployment(
            name=group,
            group=group,
            provider="openai",
            model=model,
            input_cost_per_token=Decimal(price),
            output_cost_per_token=Decimal(price),
        )

    catalog = Catalog.from_deployments(
        [dep("big", "gpt-4", "0.00003"), dep("small", "mixtral", "0.000001")]
    )
    choice = choose_group(
        ["big", "small"], ["mixtral", "gpt-4"], [0.7, 0.9], catalog, quality_target=0.65
    )
    assert choice.group == "small" and choice.scores == {"big": 0.9, "small": 0.7}
    assert choice.cost_per_1k == Decimal("0.000001") * 800 * 1000
    assert (
        choose_group(
            ["big", "small"], ["mixtral", "gpt-4"], [0.7, 0.9], catalog, quality_target=0.8
        ).group
        == "big"
    )
    assert choose_group(["big", "small"], ["mixtral", "gpt-4"], [0.7, 0.9], catalog).group == "big"


def test_prompt_files_in_every_layout(tmp_path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    (tmp_path / "p.txt").write_text("one\n\ntwo\n")
    (tmp_path / "p.csv").write_text("prompt,m1,m2\nx,True,False\n")
    assert load_prompts(tmp_path / "p.jsonl") == ["a", "b"]
    assert load_prompts(tmp_path / "p.txt") == ["one", "two"]
    assert load_prompts(tmp_path / "p.csv") == ["x"]
    (tmp_path / "list.json").write_text('["c", "d"]')
    assert load_prompts(tmp_path / "list.json") == ["c", "d"]


@pytest.mark.parametrize(("name", "text", "words"), [
    ("n.jsonl", '{"prompt": "a"}\n{"prompt": 5}\n',
     "record 2 needs a 'prompt' string (found a int)"),
    # Another field: training data, whose prompt column is looked for as train looks.
    ("m.jsonl", '{"body": "a"}\n', "no prompt column (looked for ('prompt', 'question', "
     "'text')); columns: ['body']"),
    ("l.json", "[7]", "found a int"),
    ("e.txt", "\n  \n", "no prompts in it"),
])
def test_bad_prompt_files_say_which_record_is_wrong(tmp_path, name, text, words) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError) as info:
        load_prompts(tmp_path / name)
    assert words in str(info.value)


def test_interlock_calibrate_prints_the_threshold(tmp_path) -> None:
    words = [
        "apple",
        "river",
        "stone",
        "cloud",
        "music",
        "table",
        "garden",
        "window",
        "letter",
        "bridge",
    ]
    rng = np.random.default_rng(2)
    rows = []
    for i in range(200):
        hard = rng.random() < 0.4
        text = " ".join(rng.choice(words, 6)) + (" quantum" if hard else "") + f" {i}"
        rows.append({"prompt": text, "weak": float(not hard), "strong": 1.0})
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    runner = CliRunner()
    out = tmp_path / "knn"
    assert (
        runner.invoke(app, ["train", "knn", "--data", str(data), "--out", str(out)]).exit_code == 0
    )
    result = runner.invoke(
        app, ["calibrate", str(out), "--prompts", str(data), "--strong-share", "0.25"]
    )
    assert result.exit_code == 0, result.output
    assert "strong=strong, weak=weak" in result.output and "25.0% of 200" in result.output
    missing = runner.invoke(
        app,
        ["calibrate", str(tmp_path / "nothing"), "--prompts", str(data), "--strong-share", "0.25"],
    )
    assert missing.exit_code == 2 and "interlock train ROUTER --data" in missing.output


def _two_routers(tmp_path):
    rows = [{"prompt": f"question {i} about {'hard' if i % 3 else 'easy'} thing {i % 11}",
             "strong": 1.0, "weak": float(i % 3 == 0), "mid": float(i % 2)} for i in range(60)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    three = tmp_path / "three"
    assert CliRunner().invoke(app, ["train", "mf", "--data", str(data), "--out", str(three),
                                    "--param", "epochs=2"]).exit_code == 0
    llm = tmp_path / "llm"
    assert CliRunner().invoke(app, ["train", "llm", "--data", str(data),
                                    "--out", str(llm)]).exit_code == 0
    return data, three, llm


@pytest.mark.parametrize(("args", "words"), [
    (["--strong-share", "0.3", "--strong", "weak", "--weak", "weak"],
     ["strong and weak must be different"]),
    (["--strong-share", "0.3", "--costs", "1,2,3", "--mode", "foo"],
     ["--mode must be lambda or target", "'foo'"]),
    (["--budget", "-5", "--costs", "1,2,3"], ["--budget", "cannot be negative"]),
    (["--budget", "5", "--strong-share", "0.3", "--costs", "1,2,3"], ["not both"]),
    (["--strong-share", "0.3", "--costs", "a,b,c"], ["--costs must be numbers", "'a,b,c'"]),
    (["--strong-share", "0.3", "--costs", "1,2"], ["--costs needs 3 costs"]),
    # Two models have no use for --mode, but a misspelt one was passed over in silence.
    (["--strong-share", "0.3", "--strong", "strong", "--weak", "weak", "--mode", "foo"],
     ["--mode must be lambda or target", "'foo'"]),
    # A percentage where a share belongs is told so, not "less than or equal to 1".
    (["--strong-share", "30", "--strong", "strong", "--weak", "weak"],
     ["--strong-share is a share of prompts in [0, 1] (0.3 for 30 %); got 30"]),
    (["--strong-share", "nan", "--strong", "strong", "--weak", "weak"], ["got nan"]),
])
def test_calibrate_refuses_flags_that_do_not_fit(tmp_path, args, words) -> None:
    data, three, _ = _two_routers(tmp_path)
    result = CliRunner().invoke(app, ["calibrate", str(three), "--prompts", str(data), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_calibrate_warns_of_a_budget_below_the_cheapest_model(tmp_path) -> None:
    data, three, _ = _two_routers(tmp_path)
    result = CliRunner().invoke(app, ["calibrate", str(three), "--prompts", str(data),
                                      "--budget", "0.5", "--costs", "3,1,2"])
    assert result.exit_code == 0, result.output
    assert "warning: --budget 0.5 is below the cheapest model's cost" in result.output
    assert "$1 per 1,000 requests" in result.output


def test_calibrate_refuses_the_llm_router_without_a_traceback(tmp_path) -> None:
    data, _, llm = _two_routers(tmp_path)
    result = CliRunner().invoke(app, ["calibrate", str(llm), "--prompts", str(data),
                                      "--strong-share", "0.3"])
    assert result.exit_code == 2 and "cannot be calibrated offline" in result.output
    assert "Traceback" not in result.output


def test_routellm_s_strong_model_pct_is_the_strong_share(tmp_path) -> None:
    data, three, _ = _two_routers(tmp_path)
    runs = [CliRunner().invoke(app, ["calibrate", str(three), "--prompts", str(data), flag,
                                     "0.3", "--strong", "strong", "--weak", "weak"])
            for flag in ("--strong-share", "--strong-model-pct")]
    assert [r.exit_code for r in runs] == [0, 0], runs[1].output
    assert runs[1].output == runs[0].output
    assert "30.0% of 60 prompts" in runs[1].output


def test_strong_model_pct_errors_name_it_and_both_names_are_refused(tmp_path) -> None:
    data, three, _ = _two_routers(tmp_path)
    base = ["calibrate", str(three), "--prompts", str(data), "--strong", "strong",
            "--weak", "weak"]
    pct = CliRunner().invoke(app, [*base, "--strong-model-pct", "50"])
    assert pct.exit_code == 2, pct.output
    assert "--strong-model-pct is a share of prompts in [0, 1] (0.3 for 30 %); got 50" \
        in pct.output
    both = CliRunner().invoke(app, [*base, "--strong-share", "0.3", "--strong-model-pct", "0.5"])
    assert both.exit_code == 2, both.output  # the last one was taken without a word
    assert "give --strong-share or --strong-model-pct, not both" in both.output
