#!/usr/bin/env bash
# Install what `make demo` and `make test` need on a Debian/Ubuntu machine:
# the OS packages for the podman test fleet, a pinned uv, and .venv from uv.lock.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The uv version the hosts get is the one source; the controller's is the same.
UV_VERSION=$(sed -n 's/^wandb_runtime_uv_version: "\(.*\)"$/\1/p' roles/wandb_runtime/defaults/main.yml)
if [ -z "$UV_VERSION" ]; then
  echo "error: no wandb_runtime_uv_version in roles/wandb_runtime/defaults/main.yml" >&2
  exit 1
fi
PACKAGES=(
  podman runc netavark aardvark-dns iptables uidmap mmdebstrap
  openssh-client rsync python3 python3-venv ca-certificates git
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "error: these Debian packages are missing: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"
fi

# Every test host boots systemd, and each systemd (and journald, logind, udev) takes inotify
# instances of the one user that runs the containers: the kernel's default of 128 runs out
# with a dozen hosts up at once, and a host's systemd then exits at boot.
instances=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)
if [ "$instances" -lt 1024 ] && [ "$(id -u)" -eq 0 ]; then
  if sysctl -q -w fs.inotify.max_user_instances=1024 2>/dev/null; then
    echo "bootstrap: fs.inotify.max_user_instances $instances -> 1024 (test hosts run systemd)"
  else
    echo "bootstrap: warning: cannot raise fs.inotify.max_user_instances ($instances)" >&2
  fi
fi

# A pinned uv of our own, from PyPI (astral.sh and GitHub need not be reachable).
if [ "$(.tools/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "bootstrap: installing uv $UV_VERSION into .tools"
  python3 -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

# The controller's tools, exactly as locked, with this machine's Python.
UV_PYTHON_DOWNLOADS=never .tools/bin/uv sync --frozen --python python3 --quiet
