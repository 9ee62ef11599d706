"""What a client key may be named: the same rule for the keys a config file
lists (`general_settings.api_keys`) and those made at run time (`/key/generate`,
`interlock keys generate`).

The ledger records a key's requests, and counts its budget and limits, by its
name, beside the ids Interlock makes itself (the master key's, `KEY_ID_PREFIX`
and a digest) and the labels its reports give rows without one ("(none)"): a
name like those would merge the two. Names are written in log lines too, which
a line break would split.

Imports: nothing.
"""

from __future__ import annotations

# What the ids `server.auth.key_id` makes start with; no client key's name may.
KEY_ID_PREFIX = "key-"


def name_problem(name: str) -> str | None:
    """Why a client key may not be named `name`, as a sentence; None when it may."""
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
    return (f"{name!r} cannot name a client key: {why}. A client key's name is "
            "printable characters with no spaces at either end, not starting with "
            f"{KEY_ID_PREFIX!r} and not in parentheses.")
