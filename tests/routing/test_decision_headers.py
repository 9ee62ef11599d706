"""The route and model-group header bytes a decision keeps once made."""

from __future__ import annotations

import dataclasses

from interlock.routing.decision import RoutingDecision, direct


def test_header_bytes_match_the_header_value_and_follow_a_replaced_decision() -> None:
    decision = RoutingDecision(requested="router-mf-0.1", group="strong", router="mf",
                               score=0.25, threshold=0.1)
    assert decision.header_bytes() == b"router=mf; group=strong; score=0.2500; threshold=0.1"
    assert decision.header_bytes() is decision.header_bytes()  # made once
    moved = dataclasses.replace(decision, group="weak", score=0.05)
    assert moved.header_bytes() == b"router=mf; group=weak; score=0.0500; threshold=0.1"
    assert moved.group_header_bytes() == b"weak"
    assert decision.group_header_bytes() == b"strong"


def test_a_made_header_does_not_change_equality_or_hashing() -> None:
    used, fresh = direct("budget"), direct("budget")
    used.header_bytes()
    used.group_header_bytes()
    assert used == fresh
    assert hash(used) == hash(fresh)


def test_names_a_client_chose_are_made_safe_in_the_bytes() -> None:
    decision = direct("bad\r\nname\u00e9")
    assert decision.group_header_bytes() == b"bad??name?"
    assert b"\r" not in decision.header_bytes()
