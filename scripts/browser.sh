#!/usr/bin/env bash
# The browser tests drive Debian's chromium (never a downloaded browser), with emoji fonts for readable screenshots.
# Installed with apt-get where this shell can (root, apt); otherwise said plainly: those tests are then skipped.
# Sourced by scripts/test.sh (the README's test command) and .ci/run.
browser=${FALSE_WB_CHROMIUM:-/usr/bin/chromium}
if [ -x "$browser" ] && { [ -n "${FALSE_WB_CHROMIUM:-}" ] || dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; }; then
  :
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the browser tests (apt-get) ..."
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji \
         >/dev/null; }; then
    echo "note: chromium could not be installed: the browser tests will be skipped" >&2
  fi
else
  echo "note: no chromium at $browser and no root apt-get to install it: the browser tests will be skipped." >&2
  echo "      To run them: sudo apt-get install chromium fonts-noto-color-emoji (or FALSE_WB_CHROMIUM=/path/to/it)." >&2
fi
