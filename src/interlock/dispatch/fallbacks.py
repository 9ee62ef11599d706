"""Which groups a request may fall back to, and in what order.

The configured chains (`fallbacks`, `context_window_fallbacks`,
`content_policy_fallbacks`, each `{group: [groups]}`, LiteLLM's list-of-dicts
form accepted too) plus `default_fallbacks` for groups without a chain of
their own. A gateway client's own `fallbacks` can only narrow: it keeps the
groups it names that the configuration already allows for that group, in the
request's order, and drops the rest. A library caller owns the configuration,
so its `fallbacks` (`fallbacks_as_given`) replace the general chain, as a
LiteLLM call's do. A request may name its own context-window and
content-policy chains too (`kind_fallbacks`, as LiteLLM's calls may), by the
same rules, each for its kind only. Any of them may be LiteLLM's
{group: [groups]} (with "*" for any group), of which the entry for the
request's group counts.

A request may also ask its first group to fail at once (LiteLLM's
`mock_testing_fallbacks` and its two siblings), to test the chains:
`forced_failure` says with what.

When a group fails with kind K, the plan queues K's chain of the failed group
(or, if it has none, of the group the request started with), ahead of what
was already queued, skipping groups already tried. At most `max_fallbacks`
fallback groups get an upstream call per request.

Imports: the standard library, `errors`, `types`, `dispatch.retry`, `dispatch.settings`.
"""

from __future__ import annotations

from collections.abc import Mapping

from interlock.dispatch.retry import FallbackKind
from interlock.dispatch.settings import RouterSettings
from interlock.errors import (
    ContentFiltered,
    ContextWindowExceeded,
    ProviderError,
    UpstreamServerError,
)
from interlock.types import ChatRequest

Chains = dict[str, list[str]]


def normalise_chains(value: list[dict[str, list[str]]] | dict[str, list[str]]) -> Chains:
    """{group: [fallback groups]} from either config form."""
    items: list[dict[str, list[str]]] = [value] if isinstance(value, dict) else list(value)
    out: Chains = {}
    for item in items:
        for group, chain in item.items():
            out.setdefault(group, [])
            out[group].extend(g for g in chain if g not in out[group])
    return out


class FallbackConfig:
    """The configured chains, parsed once per dispatcher."""

    def __init__(self, settings: RouterSettings) -> None:
        self.chains: dict[FallbackKind, Chains] = {
            FallbackKind.GENERAL: normalise_chains(settings.fallbacks),
            FallbackKind.CONTEXT_WINDOW: normalise_chains(settings.context_window_fallbacks),
            FallbackKind.CONTENT_POLICY: normalise_chains(settings.content_policy_fallbacks),
        }
        self.default = list(settings.default_fallbacks)
        self.max_fallbacks = settings.max_fallbacks
        # Each group's chains, as a plan reads them (never written to): a request
        # that names no fallbacks of its own gets them from here.
        self._group_chains: dict[str, dict[FallbackKind, list[str]]] = {}

    def chain(self, kind: FallbackKind, group: str) -> list[str]:
        chains = self.chains[kind]
        if group in chains:
            return list(chains[group])
        return list(self.default) if kind is FallbackKind.GENERAL else []

    def has_fallbacks(self, group: str) -> bool:
        """Whether a failed request for `group` may go on to another group."""
        return self.max_fallbacks > 0 and bool(self.chain(FallbackKind.GENERAL, group))

    def allowed(self, group: str) -> set[str]:
        out: set[str] = set()
        for kind in FallbackKind:
            out.update(self.chain(kind, group))
        return out

    def plan(self, group: str, request: ChatRequest) -> FallbackPlan:
        """The fallbacks of `request` to `group`: the configured chains, except
        where the request names its own (`fallbacks`, `kind_fallbacks`): those as
        given for a library caller (`fallbacks_as_given`), else narrowing the
        configured ones."""
        requested = _for_group(request.fallbacks, group)
        own = request.kind_fallbacks
        if requested is None and own is None:
            chains = self._group_chains.get(group)
            if chains is None:
                chains = self._group_chains[group] = {
                    kind: self.chain(kind, group) for kind in FallbackKind}
            return FallbackPlan(group, chains, self, narrowed=frozenset())
        as_given = request.fallbacks_as_given
        chains = {}
        for kind in FallbackKind:
            wanted = requested if kind is FallbackKind.GENERAL else (
                _for_group(own.get(kind.value), group) if own else None)
            if wanted is not None:
                chains[kind] = self._own_chain(kind, group, wanted, as_given)
            elif requested is not None and not as_given:
                # A client's general list also narrows the chains it names none for.
                chains[kind] = [g for g in self.chain(kind, group) if g in requested]
            else:
                chains[kind] = self.chain(kind, group)
        # The request's general list stands for every kind's; its own chains for theirs.
        narrowed = frozenset(FallbackKind) if requested is not None else frozenset(
            kind for kind in FallbackKind if own and kind.value in own)
        return FallbackPlan(group, chains, self, narrowed=narrowed)

    def _own_chain(self, kind: FallbackKind, group: str, wanted: list[str],
                   as_given: bool) -> list[str]:
        """A request's own chain of `kind`, in its order: as given (but never the
        group itself), or only the groups the configuration allows there."""
        if as_given:
            return [g for g in dict.fromkeys(wanted) if g != group]
        allowed = set(self.chain(kind, group))
        return [g for g in dict.fromkeys(wanted) if g in allowed]


def _for_group(wanted: list[str] | Mapping[str, list[str]] | None, group: str
               ) -> list[str] | None:
    """A request's chain for `group`: the list, or in LiteLLM's mapping form the
    group's entry, else "*"'s; a mapping naming neither asks for no fallbacks."""
    if isinstance(wanted, Mapping):
        return wanted.get(group, wanted.get("*", []))
    return wanted


class FallbackPlan:
    """The per-request queue of fallback groups."""

    def __init__(self, origin: str, chains: Mapping[FallbackKind, list[str]],
                 config: FallbackConfig, *, narrowed: frozenset[FallbackKind]) -> None:
        self.origin = origin
        self._chains = chains
        self._config = config
        self._narrowed = narrowed
        self.queue: list[str] = []
        self.tried: list[str] = [origin]
        # Fallback groups in which an upstream call was made; only these count
        # against max_fallbacks (a group skipped without a call costs nothing).
        self.called: set[str] = set()

    def _chain_for(self, kind: FallbackKind, failed: str) -> list[str]:
        if failed != self.origin and kind not in self._narrowed:
            own = self._config.chain(kind, failed)
            allowed = self._config.allowed(self.origin) | set(self._chains[kind])
            own = [g for g in own if g in allowed]
            if own:
                return own
        return list(self._chains[kind])

    def failed(self, group: str, kind: FallbackKind) -> None:
        """`group` is done with; queue the chain for this kind of failure first."""
        ahead = [g for g in self._chain_for(kind, group) if g not in self.tried]
        self.queue = ahead + [g for g in self.queue if g not in ahead]

    def next_group(self) -> str | None:
        while self.queue:
            group = self.queue.pop(0)
            if group in self.tried:
                continue
            if len(self.called) >= self._config.max_fallbacks:
                return None
            self.tried.append(group)
            return group
        return None

    def mark_called(self, group: str) -> None:
        if group != self.origin:
            self.called.add(group)


# What LiteLLM's testing switches make the first group fail with, and the
# chain that failure goes to.
_FORCED: dict[str, tuple[type[ProviderError], FallbackKind]] = {
    "fallbacks": (UpstreamServerError, FallbackKind.GENERAL),
    "context_window": (ContextWindowExceeded, FallbackKind.CONTEXT_WINDOW),
    "content_policy": (ContentFiltered, FallbackKind.CONTENT_POLICY),
}


def forced_failure(request: ChatRequest, group: str, origin: str
                   ) -> tuple[ProviderError, FallbackKind] | None:
    """The failure the request's first group is to have without a call (LiteLLM's
    `mock_testing_fallbacks`, `..._context_fallbacks`, `..._content_policy_fallbacks`,
    which fail the group before its retries), or None."""
    if request.mock_group_failure is None or group != origin:
        return None
    cls, kind = _FORCED[request.mock_group_failure]
    return cls(f"a mock {cls.__name__} for model group {group!r} "
               f"(mock_testing_{request.mock_group_failure}), to test its fallbacks"), kind
