#!/usr/bin/env bash
# Create the virtual environment (when missing) and install the project with its test extras into it.
#
#   bash training_scripts/setup_env.sh                  the tested environment: exactly the versions in
#                                                       requirements-lock.txt, nothing else (the default; what the
#                                                       README's two commands and CI use)
#   UMT_UPGRADE=1 bash training_scripts/setup_env.sh    the newest releases setup.cfg allows instead of the lock
#   bash training_scripts/setup_env.sh --refresh-lock   rewrite requirements-lock.txt from a throw-away venv with the
#                                                       newest releases (then run the tests before committing it)
#
# Environment:
#   UMT_VENV         the venv folder (default .venv); use another one to keep a newest-releases env beside the lock's
#   UMT_LOCK         the lock file (default requirements-lock.txt), e.g. an older set to test against
#   UMT_TORCH_PINS   with UMT_UPGRADE=1 / --refresh-lock: the torch requirement strings (default
#                    "torch==2.14.1 torchvision==0.29.1": on this project's CI machines, CPU, CPython 3.11, x86_64,
#                    the only pair that installs from local disk and imports together; elsewhere, e.g.
#                    UMT_TORCH_PINS="torch torchvision" or a CUDA build of your choice)
#   PYTHON           the interpreter that creates the venv (default python3)
#
# Idempotent: a stamp file keyed on setup.cfg, the mode and the lock skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${UMT_VENV:-.venv}
LOCK=${UMT_LOCK:-requirements-lock.txt}
PINS=${UMT_TORCH_PINS:-"torch==2.14.1 torchvision==0.29.1"}
quiet_pip() {  # pip, without this machine's harmless "Location ... is ignored" lines; fails when pip fails
  "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  return "${PIPESTATUS[0]}"
}
check_imports() {
  "$1/bin/python" -c "import torch, torchvision, transformers, open_clip, decord, av, datasets, deepspeed, peft" \
    || { echo "[setup] the environment in $1 does not import; see the pip output above" >&2; exit 1; }
}
install_newest() {  # $1: venv folder
  echo "[setup] installing the newest releases ($PINS, then .[test] with --upgrade) into $1"
  quiet_pip "$1/bin/python" -m pip install -q --upgrade pip setuptools wheel
  # shellcheck disable=SC2086
  quiet_pip "$1/bin/python" -m pip install -q $PINS
  quiet_pip "$1/bin/python" -m pip install -q --upgrade --upgrade-strategy eager -e ".[test]"
  check_imports "$1"
}

if [ "${1:-}" = "--refresh-lock" ]; then
  tmp_venv=".venv-lock-refresh"
  rm -rf "$tmp_venv"
  $PY -m venv "$tmp_venv"
  install_newest "$tmp_venv"
  made="$(date -u +%Y-%m-%d), $("$tmp_venv/bin/python" -c 'import platform; print(platform.python_implementation(), platform.python_version())')"
  {
    echo "# The tested environment: the exact version of every package training_scripts/setup_env.sh installs."
    echo "# Refresh: bash training_scripts/setup_env.sh --refresh-lock   (then bash tests/run_tests.sh, and commit)"
    echo "# Made $made, from the newest releases with: $PINS"
    "$tmp_venv/bin/python" -c 'import sys, sysconfig; print(f"# python: {sys.version_info[0]}.{sys.version_info[1]}"); print(f"# platform: {sysconfig.get_platform()}")'
    "$tmp_venv/bin/python" -m pip freeze --all --exclude-editable --disable-pip-version-check | LC_ALL=C sort -f
  } > "$LOCK.tmp"
  mv "$LOCK.tmp" "$LOCK"
  rm -rf "$tmp_venv"
  echo "[setup] wrote $LOCK ($(grep -c '==' "$LOCK") packages). Check it: bash tests/run_tests.sh"
  exit 0
elif [ -n "${1:-}" ]; then
  echo "[setup] unknown argument '$1' (only --refresh-lock)" >&2
  exit 2
fi

if [ "${UMT_UPGRADE:-0}" = "1" ]; then
  mode="newest $PINS"
else
  [ -f "$LOCK" ] || { echo "[setup] no lock file $LOCK" >&2; exit 1; }
  mode="lock $(sha1sum < "$LOCK")"
  # The lock holds binary wheels for one interpreter and platform: refuse another one instead of half-installing.
  want_py=$(sed -n 's/^# python: //p' "$LOCK"); want_platform=$(sed -n 's/^# platform: //p' "$LOCK")
  have=$($PY -c 'import sys, sysconfig; print(f"{sys.version_info[0]}.{sys.version_info[1]} {sysconfig.get_platform()}")')
  if [ "$have" != "$want_py $want_platform" ]; then
    echo "[setup] $LOCK was made for Python $want_py on $want_platform; $PY is Python $have." >&2
    echo "[setup] Install the newest releases instead: UMT_UPGRADE=1 UMT_TORCH_PINS=\"torch torchvision\" $0" >&2
    exit 1
  fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  $PY -m venv "$VENV"
fi
stamp="$VENV/.umt-installed-$( (cat setup.cfg; echo "$mode") | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  if [ "${UMT_UPGRADE:-0}" = "1" ]; then
    install_newest "$VENV"
  else
    echo "[setup] installing the locked versions of $LOCK into $VENV (about 3 minutes on a fresh machine)"
    # Exactly the lock: no resolver, no dependency pulled in at its newest release behind the lock's back.
    quiet_pip "$VENV/bin/python" -m pip install -q --no-deps -r "$LOCK"
    quiet_pip "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
    # The lock must be complete: every requirement of the project and its test extras, and of every locked
    # package, is installed in a matching version (else: refresh the lock).
    # (decord 0.6.0's wheel is named py3-none but its WHEEL file says cp36, so pip check always flags its platform
    # although it imports and works on CPython 3.11: that one line is expected, any other is an error.)
    problems=$("$VENV/bin/python" -m pip check --disable-pip-version-check 2>&1 \
      | grep -v "^decord 0.6.0 is not supported on this platform$" | grep -v "^No broken requirements found.$" || true)
    if [ -n "$problems" ]; then
      echo "$problems" >&2
      echo "[setup] $LOCK is inconsistent; refresh it: bash training_scripts/setup_env.sh --refresh-lock" >&2
      exit 1
    fi
    "$VENV/bin/python" training_scripts/check_requirements.py umt-transformers test \
      || { echo "[setup] $LOCK lacks a requirement of setup.cfg; refresh it: bash training_scripts/setup_env.sh --refresh-lock" >&2; exit 1; }
    check_imports "$VENV"
  fi
  rm -f "$VENV"/.umt-installed-*
  touch "$stamp"
fi
