"""What a client key's `models` list means, the same for the keys a config file
lists (`general_settings.api_keys`) and those made at run time (`/key/generate`,
`/key/update`, `interlock keys`): the names the key may ask for, or every name.

LiteLLM's proxy writes "every model" on a key three ways: an empty list, the
wildcard "*", and its sentinel "all-proxy-models" (its "How Key-Based Auth
Works" page). Interlock reads all three, and no list at all, as None, every
name, before the names are checked against the config, so that neither spelling
is refused as a model nobody configured. LiteLLM's "all-team-models" is not
among them: it gives a key its team's models, and Interlock has no teams; it is
refused with a word saying so, as LiteLLM refuses it on a key without a team.

Imports: the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# The entries that make a key's list mean every name, wherever they stand in it.
EVERY_MODEL = frozenset({"*", "all-proxy-models"})
_TEAM_MODELS = "all-team-models"


def allowed_models(models: list[str] | None) -> list[str] | None:
    """`models` as a key keeps it: None (every name) for no list, an empty one,
    or one holding an `EVERY_MODEL` entry; else the list as given."""
    if not models or not EVERY_MODEL.isdisjoint(models):
        return None
    return models


def unknown_models(models: Iterable[str], known: Sequence[str]) -> str | None:
    """What is wrong with a key's `models`, as the end of a sentence, when some
    of them are no name a client can ask for (`known`); None when all are."""
    unknown = [m for m in models if m not in known]
    if not unknown:
        return None
    said = (f"{', '.join(map(repr, unknown))} is not a name clients can ask for; expected "
            f"some of: {', '.join(known)}; or '*' for every name")
    if _TEAM_MODELS in unknown:
        said += (f" ({_TEAM_MODELS!r} is LiteLLM's for the models of the key's team, "
                 "and Interlock has no teams)")
    return said
