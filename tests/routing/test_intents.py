"""The semantic intent router: nearest examples, thresholds, fit, edits."""

from __future__ import annotations

import pytest

from interlock.routing.intents import IntentRouter
from interlock.routing.settings import Intent, IntentRouterSettings

INTENTS = [
    {"name": "coding", "group": "high-quality", "utterances": [
        "write a python function that parses json",
        "fix the bug in my javascript code",
        "refactor this class to use dependency injection",
        "Pythonでソートのコードを書いて",
        "why does my rust code not compile",
    ]},
    {"name": "summarise", "group": "cost-optimized", "utterances": [
        "summarise this report in three bullet points",
        "give me a summary of the meeting notes",
        "この記事を要約してください",
        "tl;dr of this long document please",
    ]},
    {"name": "smalltalk", "group": "budget", "utterances": [
        "hello how are you today",
        "tell me a joke",
        "what is a good name for my cat",
    ]},
]


@pytest.fixture
def router() -> IntentRouter:
    settings = IntentRouterSettings.model_validate(
        {"type": "intents", "intents": INTENTS, "default": "budget", "threshold": 0.15})
    return IntentRouter.from_settings("intents", settings)


@pytest.mark.parametrize(("query", "intent"), [
    ("please write a python function to reverse a list", "coding"),
    ("my javascript code has a bug", "coding"),
    ("summarise these meeting notes", "summarise"),
    ("この文書を要約して", "summarise"),
    ("tell me a joke about cats", "smalltalk"),
])
def test_queries_go_to_the_intent_of_their_nearest_examples(router, query, intent):
    match = router.route(query)
    assert match.intent == intent
    assert match.group == {i["name"]: i["group"] for i in INTENTS}[intent]
    assert match.score >= match.threshold


def test_below_threshold_goes_to_the_default(router):
    match = router.route("zzzz qqqq xxxx")
    assert match.intent is None and match.group == "budget"
    assert "default" in match.reason


def test_fit_tunes_thresholds_and_reports_accuracy(router):
    labelled = [
        ("write a python function for fizzbuzz", "coding"),
        ("summarise the quarterly report", "summarise"),
        ("hello there", "smalltalk"),
        ("quantum chromodynamics lattice gauge", None),
        ("photosynthesis in desert plants", None),
    ]
    for name in ("coding", "summarise", "smalltalk"):  # start from a bad place
        intent = next(i for i in router.intents if i.name == name)
        router.set_intent(intent.model_copy(update={"threshold": 0.99}))
    report = router.fit(labelled)
    assert report.accuracy_after >= report.accuracy_before
    assert report.accuracy_after == pytest.approx(router.accuracy(labelled))
    assert report.accuracy_after >= 0.8
    assert set(report.thresholds) == {"coding", "summarise", "smalltalk"}


def test_editing_one_intent_leaves_the_others_untouched(router):
    before = router.scores("tell me a joke")
    router.set_intent(Intent(name="translate", group="cost-optimized",
                             utterances=["translate this into french", "この文を翻訳して"]))
    after = router.scores("tell me a joke")
    for name in ("coding", "summarise", "smalltalk"):
        assert after[name] == pytest.approx(before[name])
    assert router.route("translate this sentence into french").intent == "translate"
    router.remove_intent("translate")
    assert "translate" not in router.scores("translate this")
