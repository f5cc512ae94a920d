#!/usr/bin/env bash
# Install what the project needs into the current Python (idempotent; pip skips what is already there).
# torch and torchvision are pinned exactly: a looser pin downloads several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.setup-done
req_hash=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$req_hash" ]; then
  "$PY" -m pip install --disable-pip-version-check -q -r requirements-dev.txt
  echo "$req_hash" > "$stamp"
fi
# the project itself, editable: `import core` from anywhere and the `false-wb` command; again whenever the
# installed `core` is another clone's (one Python, several checkouts)
installed=$(cd / && "$PY" -c "import core, pathlib; print(pathlib.Path(core.__file__).resolve().parent.parent)" \
            2>/dev/null || true)
if [ "$installed" != "$(pwd -P)" ] || ! command -v false-wb >/dev/null; then
  "$PY" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || "$PY" -m pip install --disable-pip-version-check -q --no-deps -e .
fi
