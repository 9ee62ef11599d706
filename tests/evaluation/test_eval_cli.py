"""`interlock eval` end to end on a tiny CSV written here: table, JSON and PNG."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from interlock.cli.main import app


def _write_outcomes(path: Path, n: int = 80) -> Path:
    rng = np.random.default_rng(3)
    topics = ["arithmetic sum of numbers", "poem about the sea", "proof of a theorem",
              "capital city of a country"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "tiny-model", "huge-model"])
        for i in range(n):
            topic = topics[i % len(topics)]
            hard = topic.startswith(("proof", "arithmetic"))
            huge = rng.random() < 0.9
            tiny = rng.random() < (0.2 if hard else 0.85)
            writer.writerow([f"Question {i}: {topic} number {i % 7}?", tiny, huge])
    return path


def test_eval_prints_the_table_and_writes_json_and_png(tmp_path: Path) -> None:
    data = _write_outcomes(tmp_path / "outcomes.csv")
    out_json, out_png = tmp_path / "report.json", tmp_path / "plot.png"
    result = CliRunner().invoke(app, [
        "eval", "--data", str(data), "--routers", "knn,random", "--folds", "3",
        "--seed", "1", "--json", str(out_json), "--plot", str(out_png),
        "--price", "tiny-model=0.10,0.40", "--price", "huge-model=5,15",
    ])
    assert result.exit_code == 0, result.output
    for column in ("router", "APGR", "CPT(50%)", "CPT(80%)", "share@95%", "$/1k@95%"):
        assert column in result.output
    assert "strong huge-model, weak tiny-model" in result.output
    assert "output tokens assumed 500" in result.output

    report = json.loads(out_json.read_text())
    names = [r["name"] for r in report["results"]]
    assert names[:2] == ["knn", "random"] and "oracle" in names
    assert report["folds"] == 3 and report["prompts"] == 80
    assert report["cost"]["prices"]["huge-model"].startswith("$5.00 in / $15.00 out per 1M")
    # Each model alone, exact: prompts are ~12 tokens, 500 out at the given prices.
    huge = report["cost"]["usd_per_1k_requests"]["huge-model"]
    assert 7.5 < float(huge) < 7.6
    knn = report["results"][0]
    assert 0.0 <= knn["cpt50"] <= 1.0 and knn["fit_seconds"] is not None
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    data = _write_outcomes(tmp_path / "outcomes.csv", n=20)
    runner = CliRunner()
    bad_price = runner.invoke(app, ["eval", "--data", str(data), "--price", "tiny-model=cheap"])
    assert bad_price.exit_code == 2 and "MODEL=IN_PER_M,OUT_PER_M" in bad_price.output
    missing = runner.invoke(app, ["eval", "--data", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "no such" in missing.output
    llm = runner.invoke(app, ["eval", "--data", str(data), "--routers", "knn,llm"])
    assert llm.exit_code == 2 and "live model" in llm.output
    half = runner.invoke(app, ["eval", "--data", str(data), "--strong", "huge-model"])
    assert half.exit_code == 2 and "both" in half.output


def test_eval_of_one_model_says_two_are_needed_not_that_prices_are(tmp_path: Path) -> None:
    data = tmp_path / "one.csv"
    data.write_text("prompt,only-model\n" + "".join(f"q{i},{i % 2}\n" for i in range(20)))
    result = CliRunner().invoke(app, ["eval", "--data", str(data), "--routers", "knn"])
    assert result.exit_code == 2, result.output
    assert "outcomes for 1: only-model" in result.output
    assert "at least two models" in result.output and "price" not in result.output


def test_eval_with_too_few_prompts_for_the_folds_says_what_to_change(tmp_path: Path) -> None:
    data = _write_outcomes(tmp_path / "outcomes.csv", n=3)
    result = CliRunner().invoke(app, ["eval", "--data", str(data), "--routers", "knn"])
    assert result.exit_code == 2, result.output
    assert "3 distinct prompt(s) cannot fill 5 folds" in result.output
    assert "give at least 5 distinct prompts, or fewer folds (--folds)" in result.output


def test_eval_checks_the_featuriser_before_the_run(tmp_path: Path) -> None:
    data = _write_outcomes(tmp_path / "outcomes.csv", n=20)
    runner = CliRunner()
    unknown = runner.invoke(app, ["eval", "--data", str(data), "--featurizer", "word2vec"])
    assert unknown.exit_code == 2 and "unknown featuriser" in unknown.output
    nowhere = runner.invoke(app, ["eval", "--data", str(data),
                                  "--featurizer", f"hashed+st:{tmp_path / 'no-model'}"])
    assert nowhere.exit_code == 2 and ("never downloads" in nowhere.output
                                       or "interlock[embeddings]" in nowhere.output)


def test_eval_takes_featuriser_parameters(tmp_path: Path) -> None:
    data = _write_outcomes(tmp_path / "outcomes.csv", n=40)
    runner = CliRunner()
    ok = runner.invoke(app, ["eval", "--data", str(data), "--routers", "knn", "--folds", "2",
                             "--featurizer-param", "dim=4", "--featurizer-param",
                             "max_chars=null"])
    assert ok.exit_code == 0, ok.output
    assert "knn" in ok.output
    bad = runner.invoke(app, ["eval", "--data", str(data), "--featurizer-param", "dims=4"])
    assert bad.exit_code == 2 and "dims" in bad.output and "max_chars" in bad.output


def _eval(*args: str):
    return CliRunner().invoke(app, ["eval", "--folds", "2", *args])


def test_eval_warns_of_a_repeated_router_and_runs_it_once(tmp_path: Path) -> None:
    data = _write_outcomes(tmp_path / "outcomes.csv")
    result = _eval("--data", str(data), "--routers", "knn,knn")
    assert result.exit_code == 0, result.output
    assert "warning: --routers names knn more than once" in result.output
    assert sum(line.startswith("knn ") for line in result.output.splitlines()) == 1


def test_eval_warns_when_strong_and_weak_look_swapped(tmp_path: Path) -> None:
    data = _write_outcomes(tmp_path / "outcomes.csv")
    result = _eval("--data", str(data), "--routers", "knn",
                   "--strong", "tiny-model", "--weak", "huge-model")
    assert result.exit_code == 0, result.output
    assert "warning: --strong tiny-model scores lower" in result.output
    assert "did you swap them?" in result.output


def test_eval_with_equal_models_gives_the_error_without_numpy_warnings(tmp_path: Path) -> None:
    data = tmp_path / "same.csv"
    data.write_text("prompt,a,b\n" + "".join(f"q{i} x,1,1\n" for i in range(20)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _eval("--data", str(data), "--routers", "knn")
    assert result.exit_code == 2 and "score the same on this data" in result.output
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_the_n_model_footer_explains_only_columns_it_has(tmp_path: Path) -> None:
    data = tmp_path / "three.csv"
    rows = [f"question {i} topic {i % 5},{i % 2},1,{int(i % 3 == 0)}\n" for i in range(60)]
    data.write_text("prompt,mid,big,small\n" + "".join(rows))
    result = _eval("--data", str(data), "--routers", "knn", "--price", "mid=1,4",
                   "--price", "big=3,15", "--price", "small=0.1,0.4")
    assert result.exit_code == 0, result.output
    assert "share@95%" not in result.output and "$/1k@95% = cheapest" in result.output


def test_eval_says_how_many_rows_it_dropped_and_why(tmp_path: Path) -> None:
    data = _write_outcomes(tmp_path / "outcomes.csv", n=40)
    with data.open("a", encoding="utf-8") as fh:
        fh.write("Question without a score?,,True\n,True,False\n")
    result = CliRunner().invoke(app, ["eval", "--data", str(data), "--routers", "random",
                                      "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert ("40 rows used, 1 dropped for a missing score, 1 dropped for an empty prompt"
            in result.output)
