# Sourced by scripts/*: installs whatever is missing, then returns. Safe to run again.
# System packages come from Debian (apt-get), Python packages into .venv at the project root.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
APT_PACKAGES=(libzbar0 chromium chromium-driver systemd shellcheck)

_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; return 1; fi
}

ensure_system_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]} (apt-get)" >&2
  _as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "setup: Python 3.11 or newer is needed" >&2; return 1
}

ensure_venv() {
  local stamp="$VENV/.installed" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV" >&2
    "$(_python)" -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing checkin-edge and its test extras into .venv" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
    echo "$want" > "$stamp"
  fi
}

# The PostgreSQL run (scripts/test --postgres) needs a server's binaries; tests/postgres.py starts
# a throwaway cluster of its own, so Debian's usual "main" cluster is not created or started.
ensure_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
  echo "setup: installing postgresql (apt-get)" >&2
  _as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
  _as_root sed -ri 's/^#? *create_main_cluster *=.*$/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf
  DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

ensure_setup() {
  ensure_system_packages
  ensure_venv
}
