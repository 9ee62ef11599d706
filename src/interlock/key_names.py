"""What a client key may be named: one rule for the keys a config file lists
(`general_settings.api_keys`) and those made at run time (`/key/generate`,
`interlock keys generate`), but for names that look like a key (below).

The ledger records a key's requests, and counts its budget and limits, by its
name, beside the ids Interlock makes itself (the master key's, `KEY_ID_PREFIX`
and a digest) and the labels its reports give rows without one ("(none)"): a
name like those would merge the two. Names are written in log lines too, which
a line break would split.

A name is also shown by `/key/list`, `/key/info` and `interlock spend --by key`,
and written at INFO when a key is made: a name that is a key (pasted in the
wrong field, or chosen as "the key's own value") would be shown wherever the
name is. Names of keys made from now on may not look like a key, alone or as
one of their words (`holds_key_like`);
`secret_judge` in `server.key_admin` also refuses one that is or holds a live key's
value whatever it looks like. A key made before this rule keeps its name (its
clients keep working, and it is updated and deleted by it); `shown_name` keeps
such a name out of the log lines written about it.

Imports: nothing.
"""

from __future__ import annotations

# What the ids `server.auth.key_id` makes start with; no client key's name may.
KEY_ID_PREFIX = "key-"
# What the client keys made at run time start with (`key_store.generate`).
KEY_PREFIX = "sk-il-"
# What keys start with: Interlock's own (KEY_PREFIX), LiteLLM's and OpenAI's and
# most providers'.
SECRET_PREFIX = "sk-"
# The rule for a name, said in every refusal.
_RULE = ("A client key's name is printable characters with no spaces at either end, "
         f"not starting with {KEY_ID_PREFIX!r} or {SECRET_PREFIX!r} and not in parentheses.")


def name_parts(name: str) -> set[str]:
    """What of a name may be a key pasted into it: the name as sent, without the
    spaces or line breaks a paste brings at either end, and each of its words."""
    return {name, name.strip(), *name.split()} - {""}


def key_like(name: str) -> bool:
    """Whether `name` looks like a key rather than a name for one."""
    return name.strip().lower().startswith(SECRET_PREFIX)


def holds_key_like(name: str) -> bool:
    """Whether any of `name`'s `name_parts` looks like a key: a key pasted among
    words ("prod sk-...") is as bad to show, log or repeat as one pasted alone."""
    return any(key_like(part) for part in name_parts(name))


# What is written in place of a name that is a key, or looks like one.
NOT_SHOWN = "(a name that looks like a key, not shown)"


def shown_name(name: str) -> str:
    """`name` as a log line writes it: repr'd, or, for a name that looks like a
    key or holds one among words (one made before names like that were
    refused), only that it is one."""
    return NOT_SHOWN if holds_key_like(name) or name == NOT_SHOWN else repr(name)


def name_problem(name: str) -> str | None:
    """Why a client key made at run time may not be named `name`, as a sentence;
    None when it may. The message does not repeat a name that looks like a key."""
    if holds_key_like(name):
        return (f"the name looks like a key or holds one (a word of it starts with "
                f"{SECRET_PREFIX!r}), and a "
                "name is shown in logs, in /key/list and in spend reports. The key "
                "itself is made by Interlock and given in the answer; send a name to "
                "know it by, as \"team-a\" or \"ci-nightly\". " + _RULE)
    return config_name_problem(name)


def config_name_problem(name: str) -> str | None:
    """`name_problem` for a key that `general_settings.api_keys` lists: the same
    rule, except that a name starting with "sk-" is warned of when the config is
    loaded (`config.loading`) rather than refused, so that a config file that
    loaded before still does."""
    if name.lower().startswith(KEY_ID_PREFIX):
        why = (f"names starting with {KEY_ID_PREFIX!r} are kept for the ids the ledger "
               "records the master key's requests by")
    elif name.startswith("(") and name.endswith(")"):
        why = "names in parentheses are kept for the labels the reports use, as '(none)'"
    elif not name.isprintable():
        why = "it has characters that do not print (line breaks, tabs, control characters)"
    elif name != name.strip():
        why = "it has spaces at either end"
    else:
        return None
    return f"{name!r} cannot name a client key: {why}. {_RULE}"
