# Sourced by ./workdeck and ./run-tests: make sure .venv holds this clone's Workdeck
# with its test tools, installing it on first use or when pyproject.toml changed.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.venv"
stamp="$venv/.workdeck-installed"

find_python() {
  for candidate in python3 python3.14 python3.13 python3.12 python3.11 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$venv/bin/workdeck" ] || [ ! -e "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  python="$(find_python)" || {
    echo "workdeck needs Python 3.11 or newer on PATH (python3)." >&2
    exit 1
  }
  echo "Installing Workdeck and its dependencies into $venv (first run only)..." >&2
  "$python" -m venv "$venv" || {
    echo "Could not create $venv: install Python's venv module (Debian: apt-get install python3-venv)." >&2
    exit 1
  }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here[test]" || {
    echo "Installing Workdeck's dependencies failed; see pip's message above." >&2
    exit 1
  }
  touch "$stamp"
fi
