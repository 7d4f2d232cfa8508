#!/usr/bin/env bash
# Create the bench-only LiteLLM venv at bench/.venv-litellm (never the project venv).
# Usage: bash bench/setup_litellm.sh   (PYTHON=python3.12 to pick another interpreter)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-litellm"
python="${PYTHON:-python3}"
version="1.108.7"

if [ -x "$venv/bin/litellm" ] && "$venv/bin/python" -c "import litellm" 2>/dev/null; then
    echo "LiteLLM venv already present: $venv"
    exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "litellm[proxy]==$version"
echo "LiteLLM $version installed in $venv"
echo "Run: $venv/bin/litellm --help"
