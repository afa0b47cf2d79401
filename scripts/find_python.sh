#!/usr/bin/env bash
# Print the install prefix of the newest local CPython X.Y shared build (pyenv), or fail with advice.
# Usage: scripts/find_python.sh 3.12
set -euo pipefail
series="${1:-3.12}"
for root in "${PYENV_ROOT:-}" "$HOME/.pyenv" /root/.pyenv; do
    [ -n "$root" ] && [ -d "$root/versions" ] || continue
    best=$(ls -d "$root/versions/$series".* 2>/dev/null | sort -V | while read -r d; do
        [ -f "$d/lib/libpython$series.so.1.0" ] && echo "$d"; done | tail -n 1)
    if [ -n "$best" ]; then echo "$best"; exit 0; fi
done
echo "error: no CPython $series shared build found under pyenv; install one with" \
     "PYTHON_CONFIGURE_OPTS=--enable-shared CFLAGS='-O3 -g' pyenv install $series" >&2
exit 1
