"""Deployment ranking: simple-shuffle's weights follow LiteLLM's precedence."""

from __future__ import annotations

import collections
import random

import pytest
from tests.dispatch.fakes import dep, make, request

from interlock.dispatch.selection import rank, shuffle_weights


@pytest.mark.parametrize(("name", "params", "expected"), [
    ("nothing set: uniform", [{}, {}], [1.0, 1.0]),
    ("weight", [{"weight": 3.0}, {"weight": 1.0}], [3.0, 1.0]),
    ("weight beats rpm", [{"weight": 1.0, "rpm": 9000}, {"weight": 1.0, "rpm": 1000}],
     [1.0, 1.0]),
    ("weight on one: the other has weight's default", [{"rpm": 9000}, {"weight": 2.0}],
     [1.0, 2.0]),
    ("rpm", [{"rpm": 9000}, {"rpm": 1000}], [9000.0, 1000.0]),
    ("rpm beats tpm", [{"rpm": 10, "tpm": 1}, {"rpm": 30, "tpm": 1000}], [10.0, 30.0]),
    ("rpm on one: the other gets no share", [{}, {"rpm": 100}], [0.0, 100.0]),
    ("tpm", [{"tpm": 100_000}, {"tpm": 300_000}], [100_000.0, 300_000.0]),
])
def test_shuffle_weights_precedence(name: str, params: list[dict[str, float]],
                                    expected: list[float]) -> None:
    tier = [dep(f"d{i}", **p) for i, p in enumerate(params)]
    assert shuffle_weights(tier) == expected, name


def _first_picks(deployments: list, n: int) -> collections.Counter[str]:
    rng = random.Random(11)
    return collections.Counter(
        rank(deployments, strategy="simple-shuffle", stats={}, rng=rng)[0].name
        for _ in range(n))


def test_simple_shuffle_splits_traffic_by_rpm_without_weights() -> None:
    counts = _first_picks([dep("big", rpm=9000), dep("small", rpm=1000)], 4000)
    assert 0.87 <= counts["big"] / 4000 <= 0.93, counts  # expected 0.9


def test_simple_shuffle_splits_traffic_by_tpm_without_weights_or_rpm() -> None:
    counts = _first_picks([dep("big", tpm=300_000), dep("small", tpm=100_000)], 4000)
    assert 0.72 <= counts["big"] / 4000 <= 0.78, counts  # expected 0.75


def test_a_deployment_without_rpm_is_still_tried_after_the_weighted_ones() -> None:
    ranked = rank([dep("unset"), dep("set", rpm=10)], strategy="simple-shuffle",
                  stats={}, rng=random.Random(3))
    assert [d.name for d in ranked] == ["set", "unset"]


async def test_dispatcher_routes_by_rpm_under_simple_shuffle() -> None:
    # Far below the limits (mock-free fake adapter, virtual time): only the split matters.
    h = make([dep("big", rpm=9000), dep("small", rpm=1000)], seed=5)
    counts = collections.Counter(
        [(await h.dispatcher.complete(request(), "g")).deployment.name for _ in range(500)])
    assert 0.85 <= counts["big"] / 500 <= 0.95, counts
