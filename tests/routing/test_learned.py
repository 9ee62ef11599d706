"""Learned routers on a planted signal: prompts mentioning "quantum" are the ones
the weak model fails. Every router must rank those above the rest better than
chance, survive a save/load round trip unchanged, and repeat itself under a seed."""

from __future__ import annotations

import numpy as np
import pytest

from interlock.errors import RouterNotTrained
from interlock.routing.data import Battles, OutcomeTable
from interlock.routing.features import HashedNgramFeaturizer
from interlock.routing.learned import ROUTER_NAMES, load_router, make_router
from interlock.routing.learned.llm import parse_rating

WORDS = [
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
    "summer",
    "candle",
    "forest",
    "engine",
    "pocket",
    "silver",
]
TRAINED = ["knn", "classifier", "mf", "sw_ranking"]
FAST = {"mf": {"epochs": 15}, "classifier": {"max_iter": 100}}


def planted(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    hard = rng.random(n) < 0.4
    prompts = [
        " ".join(rng.choice(WORDS, 7))
        + (" quantum entanglement" if h else " simple sum")
        + f" #{seed}-{i}"
        for i, h in enumerate(hard)
    ]
    weak = np.where(hard, rng.random(n) < 0.15, rng.random(n) < 0.9).astype(float)
    strong = (rng.random(n) < 0.9).astype(float)
    return prompts, np.stack([strong, weak], axis=1)


def featurizer() -> HashedNgramFeaturizer:
    return HashedNgramFeaturizer(n_features=2**12, dim=16)


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = score[positive], score[~positive]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


@pytest.fixture(scope="module")
def table() -> OutcomeTable:
    prompts, scores = planted(300, 1)
    return OutcomeTable(prompts, ["strong", "weak"], scores)


@pytest.fixture(scope="module")
def held_out() -> tuple[list[str], np.ndarray]:
    prompts, _ = planted(120, 2)
    return prompts, np.array(["quantum" in p for p in prompts])


@pytest.mark.parametrize("name", TRAINED)
def test_router_learns_the_planted_signal(name, table, held_out) -> None:
    router = make_router(name, **FAST.get(name, {}))
    router.fit(table, featurizer(), seed=0)
    prompts, hard = held_out
    wp = router.win_prob(prompts, "strong", "weak")
    assert wp.shape == (len(prompts),) and ((wp >= 0) & (wp <= 1)).all()
    assert auc(wp, hard) > 0.85, name
    q = router.predict_quality(prompts)
    assert q.shape == (len(prompts), 2)
    # The weak model's predicted quality drops on the hard prompts.
    assert q[hard, 1].mean() < q[~hard, 1].mean() - 0.2, name


def test_random_router_is_near_chance_and_repeatable(table, held_out) -> None:
    router = make_router("random")
    router.fit(table, None, seed=3)
    prompts, hard = held_out
    wp = router.win_prob(prompts, "strong", "weak")
    assert abs(auc(wp, hard) - 0.5) < 0.2
    assert np.array_equal(wp, router.win_prob(prompts, "strong", "weak"))


@pytest.mark.parametrize("name", [*TRAINED, "random", "llm"])
def test_save_load_round_trip_predicts_identically(name, table, held_out, tmp_path) -> None:
    router = make_router(name, **FAST.get(name, {}))
    router.fit(table, featurizer(), seed=0)
    router.save(tmp_path)
    loaded = load_router(tmp_path, name=name)
    assert type(loaded) is type(router) and loaded.models == router.models
    prompts = held_out[0][:20]
    if name == "llm":
        assert np.array_equal(loaded.table, router.table)  # type: ignore[attr-defined]
        return
    assert np.array_equal(loaded.predict_quality(prompts), router.predict_quality(prompts))
    assert np.array_equal(
        loaded.win_prob(prompts, "strong", "weak"), router.win_prob(prompts, "strong", "weak")
    )


@pytest.mark.parametrize("name", ["mf", "knn", "sw_ranking"])
def test_same_seed_gives_byte_identical_weights(name, table, tmp_path) -> None:
    for out in ("a", "b"):
        router = make_router(name, **FAST.get(name, {}))
        router.fit(table, featurizer(), seed=7)
        router.save(tmp_path / out)
    for f in ("weights.npz", "featurizer/featurizer.npz", "manifest.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_a_different_seed_changes_mf(table) -> None:
    a, b = make_router("mf", epochs=3), make_router("mf", epochs=3)
    a.fit(table, featurizer(), seed=1)
    b.fit(table, featurizer(), seed=2)
    assert not np.array_equal(a.vec, b.vec)  # type: ignore[attr-defined]


def _battles(table: OutcomeTable) -> Battles:
    b = Battles([], [], [], [])
    for p, (s, w) in zip(table.prompts, table.scores, strict=True):
        b.prompts.append(p)
        # Alternate sides so "model_a" carries no signal of its own.
        flip = len(b.prompts) % 2 == 0
        b.model_a.append("weak" if flip else "strong")
        b.model_b.append("strong" if flip else "weak")
        won = "tie" if s == w else ("strong" if s > w else "weak")
        b.winner.append(
            "tie" if won == "tie" else ("model_a" if b.model_a[-1] == won else "model_b")
        )
    return b


@pytest.mark.parametrize("name", TRAINED)
def test_routers_train_on_battles(name, table, held_out) -> None:
    router = make_router(name, **FAST.get(name, {}))
    router.fit(_battles(table), featurizer(), seed=0)
    assert sorted(router.models) == ["strong", "weak"]
    prompts, hard = held_out
    assert auc(router.win_prob(prompts, "strong", "weak"), hard) > 0.8, name


def test_n_model_quality_has_one_column_per_model() -> None:
    prompts, two = planted(200, 4)
    mid = (two[:, 0] + two[:, 1] > 0).astype(float)
    t = OutcomeTable(prompts, ["strong", "weak", "mid"], np.column_stack([two, mid]))
    for name in ("knn", "classifier", "sw_ranking", "mf"):
        router = make_router(name, **FAST.get(name, {}))
        router.fit(t, featurizer(), seed=0)
        q = router.predict_quality(prompts)
        assert q.shape == (len(prompts), 3)
        # "mid" is right whenever either other model is: it must rank above the weak one.
        assert q[:, 2].mean() > q[:, 1].mean(), name
    assert router.strong_weak() == ("mid", "weak")  # mid is right whenever either is


async def test_llm_router_rates_with_the_injected_ask_and_caches(table, held_out) -> None:
    asked: list[str] = []

    async def ask(prompt: str) -> str:
        asked.append(prompt)
        return "5" if "quantum" in prompt else " 1\n"

    router = make_router("llm", models=["strong", "weak"])
    router.set_ask(ask)  # type: ignore[attr-defined]
    prompts, hard = held_out
    q = await router.apredict_quality(prompts)
    assert len(asked) == len(prompts)
    await router.apredict_quality(prompts)
    assert len(asked) == len(prompts)  # cached
    wp = await router.awin_prob(prompts, "strong", "weak")
    assert auc(wp, hard) > 0.95 and q[hard, 1].mean() < q[~hard, 1].mean()


def test_llm_router_learns_its_table_when_it_can_ask(table) -> None:
    async def ask(prompt: str) -> str:
        return "4" if "quantum" in prompt else "2"

    router = make_router("llm", ask=ask)
    router.fit(table, None, seed=0)
    learned = router.table  # type: ignore[attr-defined]
    hard = np.array(["quantum" in p for p in table.prompts])
    assert learned[3, 1] == pytest.approx(
        (table.scores[hard, 1].sum() + 2 * table.scores[:, 1].mean()) / (hard.sum() + 2)
    )


@pytest.mark.parametrize("reply", ["3 because it is hard", "six", "", "0", "35"])
def test_llm_rating_is_parsed_strictly(reply) -> None:
    with pytest.raises(ValueError, match="not a rating"):
        parse_rating(reply)


def test_llm_rating_accepts_a_lone_digit() -> None:
    assert [parse_rating(r) for r in ("1", " 5 ", "3.")] == [1, 5, 3]


def test_missing_artefact_says_which_train_command_makes_one(tmp_path) -> None:
    with pytest.raises(RouterNotTrained) as err:
        load_router(tmp_path / "models" / "mf", name="mf")
    message = str(err.value)
    assert (
        f"interlock train mf --data YOUR_OUTCOMES.csv --out {tmp_path / 'models' / 'mf'}" in message
    )


def test_wrong_router_kind_in_the_artefact(table, tmp_path) -> None:
    router = make_router("knn")
    router.fit(table, featurizer(), seed=0)
    router.save(tmp_path)
    with pytest.raises(RouterNotTrained, match="holds a knn router, not mf"):
        load_router(tmp_path, name="mf")


def test_unknown_router_name() -> None:
    with pytest.raises(ValueError, match="unknown router"):
        make_router("bert")
    assert set(ROUTER_NAMES) == {"random", "sw_ranking", "mf", "knn", "classifier", "llm"}


@pytest.mark.parametrize("wrapped", [False, True])
def test_classifier_scores_one_prompt_as_it_scores_a_batch(table, held_out, wrapped) -> None:
    # A single prompt takes the featuriser's sparse_row path (no scipy matrix);
    # a batch builds the CSR matrix. Both must give the same probabilities, also
    # through the cache the gateway wraps featurisers in.
    from interlock.routing.features import CachedFeaturizer

    router = make_router("classifier", **FAST["classifier"])
    router.fit(table, featurizer(), seed=0)
    if wrapped:
        router.featurizer = CachedFeaturizer(router.featurizer, size=16)
    prompts = held_out[0][:20]
    assert type(router._features(prompts[:1])).__name__ == "_OneRow"  # the fast path ran
    batch = router.predict_quality(prompts)
    one_by_one = np.vstack([router.predict_quality([p]) for p in prompts])
    assert one_by_one.shape == batch.shape == (20, 2)
    np.testing.assert_allclose(one_by_one, batch, rtol=0, atol=1e-6)
    strong, weak = router.strong_weak()
    np.testing.assert_allclose([router.win_prob([p], strong, weak)[0] for p in prompts],
                               router.win_prob(prompts, strong, weak), rtol=0, atol=1e-6)


def test_classifier_one_prompt_path_with_three_models(table, held_out) -> None:
    # Three weight columns make rows 12 bytes wide: the one-prompt path gathers
    # whole rows as opaque items, which must work for any number of models.
    middle = np.clip(table.scores.mean(axis=1, keepdims=True), 0, 1)
    three = OutcomeTable(table.prompts, ["strong", "weak", "middle"],
                         np.hstack([table.scores, middle]))
    router = make_router("classifier", **FAST["classifier"])
    router.fit(three, featurizer(), seed=0)
    prompts = held_out[0][:10]
    one_by_one = np.vstack([router.predict_quality([p]) for p in prompts])
    assert one_by_one.shape == (10, 3)
    np.testing.assert_allclose(one_by_one, router.predict_quality(prompts), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", TRAINED)
def test_a_router_trains_on_a_single_prompt(name) -> None:
    # No n-gram occurs in two prompts, so the projection is empty; the classifier
    # must not take its one-prompt decision shortcut while training.
    tiny = OutcomeTable(["what is two plus two"], ["strong", "weak"], np.array([[1.0, 0.0]]))
    router = make_router(name, **FAST.get(name, {}))
    router.fit(tiny, featurizer(), seed=0)
    wp = router.win_prob(["an unseen prompt", "what is two plus two"], "strong", "weak")
    assert wp.shape == (2,) and ((wp >= 0) & (wp <= 1)).all()


@pytest.mark.parametrize("name", [*TRAINED, "random"])
def test_one_model_is_refused_with_the_reason(name, table) -> None:
    one = OutcomeTable(table.prompts, ["strong"], table.scores[:, :1])
    with pytest.raises(ValueError, match="at least two"):
        make_router(name).fit(one, featurizer(), seed=0)
