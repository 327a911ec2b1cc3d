#!/usr/bin/env bash
# ansible-test sanity on the collection (make sanity; make test runs it too).
# ansible-test needs pip in the venvs it makes and fetches a get-pip script from a host
# that may be unreachable: scripts/get_pip_offline.py does that job with Python's own pip.
set -euo pipefail
cd "$(dirname "$0")/.."
core=$(python3 -c 'import tomllib; print([p for p in tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"]["dev"] if p.startswith("ansible-core==")][0])')
venv=.cache/ansible-test
if [ "$("$venv/bin/pip" freeze 2>/dev/null | grep '^ansible-core==')" != "$core" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$core"
fi
# The pip version ansible-test bootstraps into its venvs (get_venv_packages' default).
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',$/\1/p" \
  "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -1)
mkdir -p ~/.ansible/test/cache
install -m 0644 scripts/get_pip_offline.py ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
python=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cd collections/ansible_collections/sweep_fleet/wandb
"$OLDPWD/$venv/bin/ansible-test" sanity --local --python "$python" --requirements 2>&1 |
  grep -v -E '^(WARNING: Location|Looking in|Processing /|Collecting |  Downloading |Requirement already|Installing collected|Successfully|  Attempting|    Found existing|    Uninstalling|      Successfully|     ━)'
exit "${PIPESTATUS[0]}"
