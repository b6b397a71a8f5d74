# Debian packages that a hack/ script needs, installed with apt-get when missing (sourced).
#
#   ensure_debian_packages PACKAGE...
#
# A fresh CI machine has none of them, so every script that needs a package installs it itself.
# `apt-get update` runs at most once per process, and only when something is missing.
ensure_debian_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null || { echo "missing packages (not a Debian machine?): ${missing[*]}" >&2; return 1; }
  local sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  if [[ -z "${HEADWATER_APT_UPDATED:-}" ]]; then
    $sudo_ apt-get update -qq >&2
    export HEADWATER_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
