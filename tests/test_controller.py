"""The RouteLLM-shaped Controller: the seed's snippet with only its import changed."""

from __future__ import annotations

import asyncio
import csv
import random

import numpy as np
import pytest

from interlock import Controller, RouterNotTrained
from interlock.errors import ConfigError, InvalidRequest, UnknownModel
from interlock.routing.learned.base import load_router
from interlock.routing.training import train_router

WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
HARD = ["prove the integral identity by contour integration",
        "derive the eigenvalues of the hamiltonian operator",
        "prove that the group homomorphism kernel is normal"]
EASY = ["what colour is the sky on a clear day", "name a fruit that is yellow",
        "how many legs does a cat have"]


@pytest.fixture(scope="module")
def mf_checkpoint(tmp_path_factory):
    """A small RouteLLM-layout outcome table with a planted signal: the weak model
    fails the hard questions, both models answer the easy ones."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("mf")
    data = folder / "outcomes.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", WEAK, STRONG])
        for i in range(150):
            hard = i % 2 == 0
            base = rng.choice(HARD if hard else EASY)
            writer.writerow([f"{base} (variant {i})", not hard or rng.random() < 0.1, True])
    out = folder / "model"
    train_router("mf", data, out, seed=0)
    return out


@pytest.fixture
def provider_env(fake_upstream, monkeypatch, tmp_path):
    for name, value in fake_upstream.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-test-key")
    # Anything a Controller wrote to the working directory (a ledger, by mistake)
    # lands in a temporary one, not the checkout the tests run from.
    monkeypatch.chdir(tmp_path)


def test_seed_controller_snippet_routes_hard_to_strong_and_easy_to_weak(
        mf_checkpoint, provider_env, fake_upstream):
    router = load_router(mf_checkpoint)
    hard_p = float(router.win_prob([HARD[0]], STRONG, WEAK)[0])
    easy_p = float(router.win_prob([EASY[0]], STRONG, WEAK)[0])
    assert hard_p > easy_p
    threshold = round((hard_p + easy_p) / 2, 4)

    client = Controller(routers=["mf"], strong_model="anthropic/claude-sonnet-4",
                        weak_model="gemini/gemini-2.0-flash-lite",
                        config={"mf": {"checkpoint_path": str(mf_checkpoint)}})
    try:
        hard = client.chat.completions.create(
            model=f"router-mf-{threshold}", messages=[{"role": "user", "content": HARD[0]}])
        easy = client.chat.completions.create(
            model=f"router-mf-{threshold}", messages=[{"role": "user", "content": EASY[0]}])
    finally:
        client.close()
    assert hard.interlock["provider"] == "anthropic"
    assert hard.interlock["route"]["router"] == "mf"
    assert hard.interlock["route"]["score"] == pytest.approx(hard_p, abs=1e-6)
    assert easy.interlock["provider"] == "gemini"
    assert "simulated" in hard.choices[0].message.content
    assert [r.provider for r in fake_upstream.received] == ["anthropic", "gemini"]


def test_a_router_without_an_artefact_fails_at_start_up_saying_how_to_train_one(
        tmp_path, provider_env):
    with pytest.raises(RouterNotTrained) as info:
        Controller(routers=["mf"], strong_model="anthropic/claude-sonnet-4",
                   weak_model="gemini/gemini-2.0-flash-lite",
                   config={"mf": {"checkpoint_path": str(tmp_path / "missing")}})
    assert "interlock train mf" in str(info.value)


async def test_a_routed_group_in_config_uses_the_learned_router(mf_checkpoint, fake_upstream):
    from interlock import Router

    def entry(group, model, provider):
        return {"model_name": group, "litellm_params": {
            "model": model, "api_key": "test-key", "api_base": fake_upstream.base_url(provider)}}

    router = Router(config={
        "model_list": [entry("high-quality", "anthropic/claude-sonnet-4", "anthropic"),
                       entry("budget", "gemini/gemini-2.0-flash-lite", "gemini")],
        "routing": {"default_group": "budget",
                    "routers": {"mf": {"type": "learned", "checkpoint_path": str(mf_checkpoint)}},
                    "groups": {"smart": {"router": "mf", "strong": "high-quality",
                                         "weak": "budget", "threshold": 0.5}}},
        "ledger": {"database": None},
        "general_settings": {"allow_unauthenticated": True},
    })
    try:
        assert "smart" in router.model_names
        resp = await router.acompletion(model="smart",
                                        messages=[{"role": "user", "content": HARD[1]}])
        route = resp.interlock["route"]
        assert route["router"] == "mf" and route["threshold"] == 0.5
        expected = "high-quality" if route["score"] >= 0.5 else "budget"
        assert resp.interlock["model_group"] == expected == route["group"]
    finally:
        await router.aclose()


async def test_a_router_trained_on_an_embeddings_endpoint_embeds_through_the_gateway(
        tmp_path, fake_upstream):
    """Train knn on vectors from an OpenAI-compatible embeddings deployment (the
    fake's), then serve it: the gateway's embeddings group embeds each prompt."""
    from interlock import Router
    from interlock.adapters.http import HttpClient, Timeouts
    from interlock.adapters.openai import OpenAIAdapter
    from interlock.catalog import Deployment, Secret
    from interlock.routing.data import OutcomeTable
    from interlock.routing.features import EmbeddingEndpointFeaturizer
    from interlock.routing.learned.registry import make_router
    from interlock.types import ChatRequest, EmbeddingRequest

    embedder = Deployment(name="emb", group="embeddings", provider="openai",
                          model="text-embedding-3-small", api_key=Secret("k"),
                          api_base=fake_upstream.base_url("openai"))

    async def embed(texts):
        http = HttpClient()
        try:
            request = EmbeddingRequest(ChatRequest(model="embeddings", messages=[]), texts)
            result = await OpenAIAdapter(http).embeddings(request, embedder, Timeouts(total=10))
            return result.vectors
        finally:
            await http.aclose()

    prompts = [f"{p} #{i}" for i, p in enumerate(HARD * 10 + EASY * 10)]
    hard = np.array([1.0] * 30 + [0.0] * 30)
    table = OutcomeTable(prompts=prompts, models=[WEAK, STRONG],
                         scores=np.stack([1 - hard, np.ones(60)], axis=1))

    def train():  # training is sync code: it runs off the event loop, as the CLI does
        knn = make_router("knn", k=1)
        knn.fit(table, EmbeddingEndpointFeaturizer(embed, dim=64,
                                                   model="text-embedding-3-small"), seed=0)
        knn.save(tmp_path / "knn")

    await asyncio.to_thread(train)

    def entry(group, model, provider):
        return {"model_name": group, "litellm_params": {
            "model": model, "api_key": "test-key", "api_base": fake_upstream.base_url(provider)}}

    router = Router(config={
        "model_list": [entry("strong", "anthropic/claude-sonnet-4", "anthropic"),
                       entry("weak", "gemini/gemini-2.0-flash-lite", "gemini"),
                       entry("embeddings", "openai/text-embedding-3-small", "openai")],
        "routing": {"strong_group": "strong", "weak_group": "weak",
                    "routers": {"knn": {"type": "learned", "checkpoint_path": str(tmp_path / "knn"),
                                        "embedding_group": "embeddings"}}},
        "ledger": {"database": None},
    })
    try:
        resp = await router.acompletion(model="router-knn-0.5",
                                        messages=[{"role": "user", "content": prompts[0]}])
    finally:
        await router.aclose()
    assert resp.interlock["route"]["error"] is None
    assert resp.interlock["provider"] == "anthropic"  # its nearest neighbour is itself: hard
    embedded = [r for r in fake_upstream.received if r.path.endswith("/embeddings")]
    assert embedded[-1].body["input"] == [prompts[0]]



def test_routellm_route_router_threshold_arguments_and_model_counts(
        mf_checkpoint, provider_env, fake_upstream):
    router = load_router(mf_checkpoint)
    hard_p = float(router.win_prob([HARD[0]], STRONG, WEAK)[0])
    easy_p = float(router.win_prob([EASY[0]], STRONG, WEAK)[0])
    threshold = round((hard_p + easy_p) / 2, 4)
    client = Controller(routers=["mf"], strong_model="anthropic/claude-sonnet-4",
                        weak_model="gemini/gemini-2.0-flash-lite",
                        config={"mf": {"checkpoint_path": str(mf_checkpoint)}})
    try:
        # route() decides without calling anyone.
        assert client.route(HARD[0], "mf", threshold) == "anthropic/claude-sonnet-4"
        assert client.route(EASY[0], "mf", threshold) == "gemini/gemini-2.0-flash-lite"
        assert fake_upstream.received == []
        # RouteLLM's router= and threshold= instead of the model name.
        client.completion(router="mf", threshold=threshold,
                          messages=[{"role": "user", "content": HARD[0]}])
        client.chat.completions.create(model=f"router-mf-{threshold}",
                                       messages=[{"role": "user", "content": EASY[0]}])
        client.completion(router="mf", threshold=threshold,
                          messages=[{"role": "user", "content": EASY[0]}])
        with pytest.raises(ValueError, match="router= and threshold="):
            client.completion(router="mf", messages=[{"role": "user", "content": "x"}])
    finally:
        client.close()
    assert client.model_counts["mf"] == {"anthropic/claude-sonnet-4": 1,
                                         "gemini/gemini-2.0-flash-lite": 2}


class _Series(list):
    """Just enough of a pandas Series (not a dependency) to show its index is kept."""

    def __init__(self, values, index=None):
        super().__init__(values)
        self.index = list(index) if index is not None else list(range(len(values)))

    def to_frame(self):
        raise NotImplementedError


def test_routellm_batch_calculate_win_rate_scores_every_prompt_without_calling(
        mf_checkpoint, provider_env, fake_upstream):
    router = load_router(mf_checkpoint)
    prompts = [HARD[0], EASY[0], HARD[1]]
    expected = router.win_prob(prompts, STRONG, WEAK)
    client = Controller(routers=["mf"], strong_model="anthropic/claude-sonnet-4",
                        weak_model="gemini/gemini-2.0-flash-lite",
                        config={"mf": {"checkpoint_path": str(mf_checkpoint)}})
    try:
        rates = client.batch_calculate_win_rate(prompts, router="mf")
        series = client.batch_calculate_win_rate(_Series(prompts, index=["a", "b", "c"]), "mf")
        with pytest.raises(UnknownModel, match="router-mf-<threshold>"):
            client.batch_calculate_win_rate(prompts, router="bert")
    finally:
        client.close()
    assert rates == pytest.approx([float(p) for p in expected])
    assert rates[0] > rates[1]  # the hard prompt is likelier won by the strong model
    assert isinstance(series, _Series) and series.index == ["a", "b", "c"]
    assert list(series) == pytest.approx(rates)
    assert fake_upstream.received == []


def _controller(checkpoint, **kwargs):
    return Controller(routers=kwargs.pop("routers", ["mf"]),
                      strong_model="anthropic/claude-sonnet-4",
                      weak_model="gemini/gemini-2.0-flash-lite",
                      config=kwargs.pop("config", {"mf": {"checkpoint_path": str(checkpoint)}}),
                      **kwargs)


def test_a_controller_writes_no_ledger_unless_given_one(mf_checkpoint, tmp_path, provider_env):
    # provider_env runs the test in tmp_path, where a default ledger file would land.
    messages = [{"role": "user", "content": "hi"}]
    client = _controller(mf_checkpoint)
    client.completion(model="router-mf-0.5", messages=messages, mock_response="ok")
    client.close()
    assert list(tmp_path.iterdir()) == []
    client = _controller(mf_checkpoint, ledger=str(tmp_path / "spend.sqlite"))
    client.completion(model="router-mf-0.5", messages=messages, mock_response="ok")
    client.close()
    assert [p.name for p in tmp_path.iterdir()] == ["spend.sqlite"]


@pytest.mark.parametrize(("routers", "words"), [
    ("mf", ["routers must be a list of router names", "'mf'"]),
    (["MF"], ["'MF'", "lower-case"]),
    (["mf-v2"], ["'mf-v2'", "router-<name>-<threshold>"]),
])
def test_router_names_an_alias_cannot_carry_are_refused_at_construction(
        mf_checkpoint, routers, words):
    name = routers if isinstance(routers, str) else routers[0]
    with pytest.raises(ValueError) as info:
        _controller(mf_checkpoint, routers=routers,
                    config={name: {"checkpoint_path": str(mf_checkpoint)}})
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("call", "words"), [
    (lambda c: c.route("hello", "mf", 1.5), ["threshold must be a number in [0, 1]", "1.5"]),
    (lambda c: c.route("hello", "mf", -1), ["threshold must be a number in [0, 1]", "-1"]),
    (lambda c: c.route("hello", "knn", 0.5),
     ["Router 'knn' is not one of this Controller's routers (mf)"]),
    (lambda c: c.completion(model="router-mf-1.5", messages=[]), ["in [0, 1]", "1.5"]),
    (lambda c: c.completion(model="router-knn-0.5", messages=[]), ["'knn' is not one of"]),
    (lambda c: c.completion(model="router-mf-abc", messages=[]),
     ["router-<name>-<threshold>", "router-mf-0.5"]),
    (lambda c: c.batch_calculate_win_rate(["a"], "knn"), ["'knn' is not one of"]),
    (lambda c: c.batch_calculate_win_rate("hello", "mf"), ["not one string"]),
    # Was scored as the text "None".
    (lambda c: c.batch_calculate_win_rate(["a", None], "mf"),
     ["batch_calculate_win_rate: prompt 1 has type NoneType, not str"]),
    # Spoke of messages[0].content, which route() is not given.
    (lambda c: c.route(None, "mf", 0.5), ["route takes the prompt as a string", "NoneType"]),
    (lambda c: c.route(["hi"], "mf", 0.5), ["route takes the prompt as a string", "list"]),
])
def test_controller_errors_name_the_problem_and_the_accepted_form(mf_checkpoint, call, words):
    client = _controller(mf_checkpoint)
    try:
        with pytest.raises((ValueError, UnknownModel)) as info:
            call(client)
    finally:
        client.close()
    for word in words:
        assert word in str(info.value)


def test_small_thresholds_route_as_python_prints_them(mf_checkpoint):
    client = _controller(mf_checkpoint)
    try:
        assert client.route(EASY[0], "mf", 1e-05) == "anthropic/claude-sonnet-4"
    finally:
        client.close()


def test_an_llm_router_without_a_judge_group_is_refused_at_construction(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("prompt,s,w\n" + "".join(f"q{i},1,{i % 2}\n" for i in range(20)))
    train_router("llm", data, tmp_path / "llm")
    with pytest.raises(ValueError, match="judge_group"):
        _controller(None, routers=["llm"],
                    config={"llm": {"checkpoint_path": str(tmp_path / "llm")}})


@pytest.mark.parametrize(("name", "command"), [
    ("mf", "`interlock train mf --data FILE --out DIR`"),
    # RouteLLM's names for our classifier and llm: `interlock train bert` does not exist.
    ("bert", "RouteLLM's bert router is Interlock's classifier: make DIR with "
             "`interlock train classifier --data FILE --out DIR`"),
    ("causal_llm", "`interlock train llm --data FILE --out DIR`"),
    ("my_router", "`interlock train KIND --data FILE --out DIR`, KIND one of random, "
                  "sw_ranking, mf, knn, classifier, llm"),
])
def test_a_router_without_a_checkpoint_is_told_a_train_command_that_exists(name, command):
    with pytest.raises(ValueError) as info:
        _controller(None, routers=[name], config={})
    assert f"config={{'{name}': {{'checkpoint_path': DIR}}}}" in str(info.value)
    assert command in str(info.value)


def test_a_garbled_checkpoint_manifest_is_refused_saying_how_to_remake_it(tmp_path):
    (tmp_path / "mf").mkdir()
    (tmp_path / "mf" / "manifest.json").write_text("{garbled")
    with pytest.raises(RouterNotTrained, match="is damaged or incomplete"):
        _controller(None, config={"mf": {"checkpoint_path": str(tmp_path / "mf")}})


def test_routellm_s_arguments_may_be_given_by_position_in_its_order(
        mf_checkpoint, provider_env, fake_upstream):
    # RouteLLM: Controller(routers, strong_model, weak_model, config, api_base, api_key,
    # progress_bar).
    client = Controller(["mf"], "openai/gpt-4o", "openai/gpt-4o-mini",
                        {"mf": {"checkpoint_path": str(mf_checkpoint)}},
                        fake_upstream.base_url("openai"), "sk-positional-key", False)
    try:
        response = client.completion(model="router-mf-1", messages=[
            {"role": "user", "content": EASY[0]}])
    finally:
        client.close()
    assert response.interlock["model_group"] == "weak"
    assert [(r.provider, r.headers["authorization"]) for r in fake_upstream.received] == [
        ("openai", "Bearer sk-positional-key")]


def test_config_errors_say_which_controller_argument_a_config_key_stands_for(mf_checkpoint):
    # RouteLLM's own example pair: anyscale/ is no provider Interlock speaks.
    with pytest.raises(ConfigError) as info:
        Controller(routers=["mf"], strong_model="gpt-4-1106-preview",
                   weak_model="anyscale/mistralai/Mixtral-8x7B-Instruct-v0.1",
                   config={"mf": {"checkpoint_path": str(mf_checkpoint)}})
    message = str(info.value)
    assert "model_list[1].litellm_params.model: got 'anyscale/mistralai/" in message
    assert "model_list[1] weak_model" in message and "model_list[0] is strong_model" in message


@pytest.mark.parametrize(("config", "words"), [
    # A path where RouteLLM's dict belongs: was an AttributeError on str.get.
    ("models/mf", ["config (the 4th argument) must be a dict of router name to its settings",
                   "config={'mf': {'checkpoint_path': DIR}}", "type str"]),
    # The checkpoint path without its dict: was "dictionary update sequence ...".
    ({"mf": "models/mf"}, ["config['mf'] must be a dict of that router's settings",
                           "config={'mf': {'checkpoint_path': DIR}}", "type str"]),
    ([("mf", {})], ["config (the 4th argument) must be a dict", "type list"]),
])
def test_a_config_not_in_routellm_s_shape_is_refused_with_the_shape(config, words):
    with pytest.raises(ValueError) as info:
        Controller(["mf"], "openai/gpt-4o", "openai/gpt-4o-mini", config)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("prompts", "words"), [
    ("hello", "(got a value of type str): wrap one prompt as [prompt]"),  # letter by letter
    (["hello", None], "prompt 1 has type NoneType, not str"),  # was an AttributeError
    (42, "(got a value of type int)"),
])
def test_router_win_rates_checks_its_prompts(mf_checkpoint, prompts, words):
    client = _controller(mf_checkpoint)
    try:
        with pytest.raises(InvalidRequest) as info:
            client.router.win_rates("mf", prompts)
        assert client.router.win_rates("mf", ("hello", "prove it")) == pytest.approx(
            client.batch_calculate_win_rate(["hello", "prove it"], "mf"))
    finally:
        client.close()
    assert words in str(info.value)


def test_routellm_s_published_checkpoint_is_said_to_be_unloadable(tmp_path, monkeypatch):
    # RouteLLM's README: config={"mf": {"checkpoint_path": "routellm/mf_gpt4_augmented"}}.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RouterNotTrained) as info:
        _controller(None, config={"mf": {"checkpoint_path": "routellm/mf_gpt4_augmented"}})
    message = str(info.value)
    assert "routellm/mf_gpt4_augmented looks like one of RouteLLM's published checkpoints" in (
        message)
    assert "interlock train mf --data YOUR_OUTCOMES.csv" in message


def test_a_config_note_names_only_the_keys_the_error_is_about():
    with pytest.raises(ConfigError) as info:
        Controller(["random"], "openai/gpt-4o", "openai/gpt-4o-mini", num_retries="x",
                   environ={"OPENAI_API_KEY": "sk-test"})
    message = str(info.value)
    assert "router_settings.num_retries" in message
    assert "router_settings are its other keyword arguments" in message
    assert "model_list" not in message  # was said with every error


def test_a_missing_checkpoint_under_a_routellm_name_says_the_kind_to_train(tmp_path):
    with pytest.raises(RouterNotTrained) as info:
        Controller(["bert"], "openai/gpt-4o", "openai/gpt-4o-mini",
                   {"bert": {"checkpoint_path": str(tmp_path / "bert")}},
                   environ={"OPENAI_API_KEY": "sk-test"})
    message = str(info.value)
    assert "routing.routers.NAME is config[NAME]" in message
    assert ("RouteLLM's bert router is Interlock's classifier: make DIR with "
            "`interlock train classifier --data FILE --out DIR`") in message
