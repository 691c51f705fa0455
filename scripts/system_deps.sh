#!/usr/bin/env bash
# The system packages `make demo` and `make test` need, checked before anything runs.
#
#   scripts/system_deps.sh demo   OpenCV's libGL and GLib, Chromium (code fidelity renders HTML)
#   scripts/system_deps.sh test   the same, plus Node.js and npm (the workbench's Label Studio editor)
#
# On Debian/Ubuntu as root the missing packages are installed with apt-get; otherwise the script
# names the exact command to run and stops, so no test starts on a machine that cannot pass it.
set -euo pipefail

purpose="${1:-test}"
chromium="${QWEN_CHROMIUM_PATH:-/usr/bin/chromium}"
missing=()

has_library() { ldconfig -p 2>/dev/null | grep -q "$1"; }

has_library 'libGL\.so\.1' || missing+=(libgl1)
has_library 'libglib-2\.0\.so\.0' || missing+=(libglib2.0-0)
[ -x "$chromium" ] || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "$purpose" = "test" ]; then
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
fi

[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

cat >&2 <<EOF
make $purpose needs system packages that are not installed: ${missing[*]}
Install them, then run make $purpose again:

    sudo apt-get install -y --no-install-recommends ${missing[*]}

(Chromium elsewhere than /usr/bin/chromium: set QWEN_CHROMIUM_PATH.)
EOF
exit 1
