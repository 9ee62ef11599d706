#!/usr/bin/env bash
# Creates the pinned LiteLLM proxy virtualenv used only as a peer in
# benchmarks/overhead.py. It lives in benchmarks/.venv-litellm (git-ignored) and is
# never a dependency of Interlock. 1.106.12 is pinned because the proxy extra of
# 1.110.x asks for a package the registry here does not have.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-litellm"
version="${LITELLM_VERSION:-1.106.12}"
python="${PYTHON:-python3.11}"

if [ -x "$venv/bin/litellm" ] && "$venv/bin/python" -c \
    "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$version')"; then
    echo "litellm $version already installed in $venv"
    exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "litellm[proxy]==$version"
"$venv/bin/python" -c "import importlib.metadata as m; print('litellm', m.version('litellm'))"
