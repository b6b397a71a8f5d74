# Debian packages that a hack/ script needs, installed with apt-get when missing (sourced).
#
#   ensure_debian_packages [--with-recommends] PACKAGE...
#
# A fresh CI machine has none of them, so every script that needs a package installs it itself.
# Scripts run side by side (the real tier builds images while the node comes up), and apt allows one
# user at a time: installs wait for each other on a lock file, and look again once they hold it.
missing_debian_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

ensure_debian_packages() {
  local recommends="--no-install-recommends"
  [[ "${1:-}" == "--with-recommends" ]] && { recommends=""; shift; }
  [[ -z "$(missing_debian_packages "$@")" ]] && return 0
  command -v apt-get >/dev/null || { echo "missing packages (not a Debian machine?): $*" >&2; return 1; }
  local sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo"
  (
    flock -w 1800 9 || { echo "waited 30 minutes for another apt-get to finish" >&2; exit 1; }
    local missing; missing="$(missing_debian_packages "$@")"
    [[ -z "$missing" ]] && exit 0
    echo "installing Debian packages:" $missing >&2
    $sudo_ apt-get update -qq >&2
    # shellcheck disable=SC2086 # one word per package (and none for an empty option)
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq $recommends $missing >&2
  ) 9>>"${TMPDIR:-/tmp}/headwater-apt.lock"
}
