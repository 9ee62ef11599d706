"""The rules router: first match wins, on text, length, code, tools, images, turns, tags."""

from __future__ import annotations

import pytest

from interlock.errors import ConfigError
from interlock.openai_request import parse_chat_request
from interlock.routing.rules import RulesRouter, estimate_tokens
from interlock.routing.settings import RulesRouterSettings

# The seed's three tiers: hard coding to Claude, long documents (and summaries,
# translations) to Gemini 2.5 Pro, everything else to Flash-Lite.
SEED_RULES = {
    "type": "rules",
    "default": "budget",
    "rules": [
        {"name": "coding", "group": "high-quality", "any": [
            {"has_code_block": True},
            {"regex": [r"コード", r"プログラム", r"実装", r"バグ",
                       r"\b(code|coding|function|class|bug|debug|refactor|implement|compile|"
                       r"stack ?trace|exception|regex|sql|python|javascript|typescript)\b"]},
        ]},
        {"name": "long-document", "group": "cost-optimized",
         "when": {"min_tokens": 3000, "text": "all"}},
        {"name": "summarise-translate", "group": "cost-optimized",
         "when": {"regex": [r"要約", r"翻訳", r"summari[sz]", r"translat", r"tl;?dr"]}},
    ],
}


def route(router: RulesRouter, content, **extra):
    request = parse_chat_request({"model": "auto", "messages": [
        {"role": "user", "content": content}], **extra})
    return router.route(request)


@pytest.fixture
def seed_router() -> RulesRouter:
    return RulesRouter("tiers", RulesRouterSettings.model_validate(SEED_RULES))


@pytest.mark.parametrize(("prompt", "group", "rule"), [
    ("Pythonでクイックソートのコードを書いて", "high-quality", "coding"),
    ("Fix this bug:\n```js\nlet x = 1\n```", "high-quality", "coding"),
    ("Refactor my Python function to be faster", "high-quality", "coding"),
    ("この記事を要約してください", "cost-optimized", "summarise-translate"),
    ("この文章を英語に翻訳して", "cost-optimized", "summarise-translate"),
    ("Summarize the following report for the board", "cost-optimized",
     "summarise-translate"),
    ("word " * 4000, "cost-optimized", "long-document"),
    ("こんにちは！元気？", "budget", None),
    ("What's a good name for a cat?", "budget", None),
])
def test_seed_prompts_go_where_the_seed_intends(seed_router, prompt, group, rule):
    match = route(seed_router, prompt)
    assert match is not None
    assert (match.group, match.rule) == (group, rule)


def test_first_match_wins_even_when_later_rules_also_match(seed_router):
    # Code inside a long document: the coding rule comes first.
    match = route(seed_router, "def f():\n    pass\n```\n" + "word " * 4000)
    assert match.rule == "coding"


def test_conditions_on_tools_images_turns_metadata_and_tags():
    router = RulesRouter("r", RulesRouterSettings.model_validate({
        "type": "rules", "rules": [
            {"name": "tools", "group": "a", "when": {"has_tools": True}},
            {"name": "images", "group": "b", "when": {"has_images": True}},
            {"name": "team", "group": "c", "when": {"metadata": {"team": "search"}}},
            {"name": "tagged", "group": "d", "when": {"tags": ["vip"]}},
            {"name": "long-chat", "group": "e", "when": {"min_turns": 3}},
        ]}))
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert route(router, "x", tools=tools).group == "a"
    image = [{"type": "image_url", "image_url": {"url": "https://e.x/cat.png"}}]
    assert route(router, image).group == "b"
    assert route(router, "x", metadata={"team": "search"}).group == "c"
    assert route(router, "x", tags=["vip"]).group == "d"
    chat = parse_chat_request({"model": "m", "messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"},
        {"role": "user", "content": "e"}]})
    assert router.route(chat).group == "e"
    assert route(router, "plain") is None  # no rule, no default


def test_length_bounds_in_characters_and_tokens():
    router = RulesRouter("r", RulesRouterSettings.model_validate({
        "type": "rules", "default": "small", "rules": [
            {"name": "long", "group": "big", "when": {"min_chars": 20}},
            {"name": "mid", "group": "mid", "when": {"min_tokens": 3, "max_tokens": 4}},
        ]}))
    assert route(router, "x" * 20).group == "big"
    assert route(router, "x" * 12).group == "mid"
    assert route(router, "x").group == "small"


def test_cjk_characters_count_as_tokens_each():
    assert estimate_tokens("要約してください") == 8
    assert estimate_tokens("abcdefgh") == 2


@pytest.mark.parametrize("text", ["", "abc", "été au café", "要約 summary です。",
                                  "\u3000\u9fff\uf900\ufaff\u2fff\ua000\ufb00", "混" * 3 + "x" * 9])
def test_token_estimates_count_cjk_characters_one_each_and_the_rest_by_four(text: str) -> None:
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    assert estimate_tokens(text) == cjk + (len(text) - cjk + 3) // 4


def test_a_bad_regex_is_reported_with_its_place():
    settings = RulesRouterSettings.model_validate({"type": "rules", "rules": [
        {"name": "x", "group": "a", "when": {"regex": ["(unclosed"]}}]})
    with pytest.raises(ConfigError, match=r"rules\[0\]\.when\.regex\[0\]: got '\(unclosed'"):
        RulesRouter("r", settings)
