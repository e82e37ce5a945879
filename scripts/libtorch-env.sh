# Finds or installs libtorch 2.13.0 and exports LIBTORCH for the build, and
# TRAINUI_PYTHON, a Python whose torch is that same 2.13.0 (the bench's
# PyTorch peer runs on it). Sourced by ./dev; every step is idempotent, so
# sourcing it again is quick.
#
# Order of preference:
#   1. LIBTORCH already set, pointing at a libtorch (or torch wheel) folder;
#   2. a `python3` on PATH whose torch is 2.13.0;
#   3. a private install under ${XDG_CACHE_HOME:-~/.cache}/trainui, made on
#      first use with `pip install torch==2.13.0` (about 4.7 GB with its CUDA
#      libraries, which also make the same build use a GPU where there is one).

TRAINUI_TORCH_VERSION="2.13.0"

trainui_libtorch_ok() {
  [ -n "$1" ] && [ -f "$1/lib/libtorch_cpu.so" ] && [ -d "$1/include" ]
}

# Prints the torch folder of the Python at $1 if its torch is the right version.
trainui_python_torch() {
  "$1" -W ignore - 2>/dev/null <<PY
import os, torch
if torch.__version__.split("+")[0] == "$TRAINUI_TORCH_VERSION":
    print(os.path.dirname(torch.__file__))
PY
}

trainui_find_libtorch() {
  if [ -n "${LIBTORCH:-}" ]; then
    if trainui_libtorch_ok "$LIBTORCH"; then
      return 0
    fi
    echo "error: LIBTORCH=$LIBTORCH holds no lib/libtorch_cpu.so; unset it, or point it at a libtorch $TRAINUI_TORCH_VERSION folder" >&2
    return 1
  fi

  local found
  found=$(trainui_python_torch python3 || true)
  if trainui_libtorch_ok "$found"; then
    export LIBTORCH="$found"
    return 0
  fi

  # Without HOME (some CI and service environments), ~ still names the
  # user's home folder.
  local cache="${XDG_CACHE_HOME:-${HOME:-$(echo ~)}/.cache}"
  local home="$cache/trainui/torch-$TRAINUI_TORCH_VERSION"
  if [ ! -f "$home/.complete" ]; then
    echo "trainui: installing torch==$TRAINUI_TORCH_VERSION into $home (about 4.7 GB, once)" >&2
    rm -rf "$home"
    mkdir -p "$home"
    if python3 -m venv "$home" 2>/dev/null && [ -x "$home/bin/pip" ]; then
      "$home/bin/pip" install --quiet --disable-pip-version-check "torch==$TRAINUI_TORCH_VERSION"
    else
      # No venv module (e.g. Debian without python3-venv): a plain target folder.
      rm -rf "$home" && mkdir -p "$home/site"
      python3 -m pip install --quiet --disable-pip-version-check --target "$home/site" \
        "torch==$TRAINUI_TORCH_VERSION"
    fi || {
      echo "error: pip could not install torch==$TRAINUI_TORCH_VERSION into $home" >&2
      return 1
    }
    touch "$home/.complete"
  fi
  for found in "$home"/lib/python3*/site-packages/torch "$home/site/torch"; do
    trainui_libtorch_ok "$found" && break
  done
  if ! trainui_libtorch_ok "$found"; then
    echo "error: $home holds no usable torch $TRAINUI_TORCH_VERSION; remove that folder and run again" >&2
    return 1
  fi
  export LIBTORCH="$found"
}

# Exports TRAINUI_PYTHON (unless already set): a Python that imports the
# torch 2.13.0 that LIBTORCH points into.
trainui_find_python() {
  if [ -n "${TRAINUI_PYTHON:-}" ]; then
    return 0
  fi
  local venv_python
  venv_python="$(cd "$LIBTORCH/../../../.." 2>/dev/null && pwd)/bin/python"
  for candidate in "$venv_python" python3; do
    if [ -n "$(trainui_python_torch "$candidate" || true)" ]; then
      TRAINUI_PYTHON="$(command -v "$candidate")"
      export TRAINUI_PYTHON
      return 0
    fi
  done
  # A plain target folder (no venv): the system Python with it on its path.
  PYTHONPATH="$(dirname "$LIBTORCH")${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONPATH
  if [ -n "$(trainui_python_torch python3 || true)" ]; then
    TRAINUI_PYTHON="$(command -v python3)"
    export TRAINUI_PYTHON
    return 0
  fi
  echo "error: no Python here imports the torch in $LIBTORCH; set TRAINUI_PYTHON to one that does" >&2
  return 1
}

# The Python side's test dependencies, pinned: transformers builds tiny
# Hugging Face checkpoints for the model-folder tests and runs the Trainer
# of the Python package's tests, with accelerate, pytorch-lightning (its
# torch>=2.1.0 keeps the installed torch), pytest and jsonschema; ruff lints
# and formats the package.
TRAINUI_PYTHON_TEST_DEPS=(
  "transformers==5.24.0"
  "accelerate==1.15.0"
  "pytorch-lightning==2.6.6"
  "pytest==9.2.0"
  "jsonschema==4.26.0"
  "tensorboard==2.21.0"
  "ruff==0.17.6"
)

# Installs (once) what TRAINUI_PYTHON lacks of TRAINUI_PYTHON_TEST_DEPS,
# beside its torch.
trainui_python_test_deps() {
  local ruff
  ruff=$(printf '%s\n' "${TRAINUI_PYTHON_TEST_DEPS[@]}" | sed -n 's/^ruff==/ruff /p')
  if "$TRAINUI_PYTHON" -c "import transformers, accelerate, pytorch_lightning, pytest, jsonschema, tensorboard" 2>/dev/null \
    && [ "$("$TRAINUI_PYTHON" -m ruff --version 2>/dev/null)" = "$ruff" ]; then
    return 0
  fi
  echo "trainui: installing ${TRAINUI_PYTHON_TEST_DEPS[*]} for the tests" >&2
  local pip=("$TRAINUI_PYTHON" -m pip install --quiet --disable-pip-version-check)
  if "$TRAINUI_PYTHON" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)"; then
    "${pip[@]}" "${TRAINUI_PYTHON_TEST_DEPS[@]}"   # a venv
  elif [ "$(basename "$(dirname "$LIBTORCH")")" = site ]; then
    "${pip[@]}" --target "$(dirname "$LIBTORCH")" "${TRAINUI_PYTHON_TEST_DEPS[@]}"
  else
    "${pip[@]}" --user "${TRAINUI_PYTHON_TEST_DEPS[@]}"
  fi || {
    echo "error: pip could not install ${TRAINUI_PYTHON_TEST_DEPS[*]} for $TRAINUI_PYTHON" >&2
    return 1
  }
}

# Builds the wheel of python/ (the `trainui` package and the `trainui`
# program, crates/monitor) into $target/wheels, as `pip wheel ./python`
# does for a user, and exports TRAINUI_WHEEL, its path.
trainui_build_wheel() {
  local target="${CARGO_TARGET_DIR:-target}"
  rm -rf "$target/wheels"
  "$TRAINUI_PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps ./python \
    -w "$target/wheels" || {
    echo "error: pip could not build the wheel of ./python (maturin, from PyPI, builds it with cargo)" >&2
    return 1
  }
  TRAINUI_WHEEL="$(cd "$target/wheels" && pwd)/$(cd "$target/wheels" && ls trainui-*.whl)"
  export TRAINUI_WHEEL
}

# Installs that wheel for TRAINUI_PYTHON, so that the jobs the Rust tests
# start (and their torchrun workers) import this version.
trainui_python_package() {
  local pip=("$TRAINUI_PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps
    --no-index --force-reinstall)
  if "$TRAINUI_PYTHON" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)"; then
    "${pip[@]}" "$TRAINUI_WHEEL"
  elif [ "$(basename "$(dirname "$LIBTORCH")")" = site ]; then
    "${pip[@]}" --upgrade --target "$(dirname "$LIBTORCH")" "$TRAINUI_WHEEL"
  else
    "${pip[@]}" --user "$TRAINUI_WHEEL"
  fi || {
    echo "error: pip could not install $TRAINUI_WHEEL for $TRAINUI_PYTHON" >&2
    return 1
  }
}

# A fresh virtual environment, $target/wheel-env, with the wheel installed
# as a user installs it, where the Python tests run: it sees TRAINUI_PYTHON's
# packages (torch and the test dependencies) through a .pth file, as a
# user's environment has its own torch, and their commands (torchrun...).
# Exports TRAINUI_WHEEL_ENV and
# TRAINUI_WHEEL_PATH, the PATH the tests run with: the environment's bin/
# first, and no folder that holds cargo or rustc.
trainui_wheel_env() {
  local target="${CARGO_TARGET_DIR:-target}"
  local env="$target/wheel-env"
  rm -rf "$env"
  "$TRAINUI_PYTHON" -m venv --without-pip "$env"
  env="$(cd "$env" && pwd)"
  local site
  site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$TRAINUI_PYTHON" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' \
    >"$site/trainui-test-packages.pth"
  # --no-index: everything the wheel needs is there already.
  "$TRAINUI_PYTHON" -m pip --python "$env/bin/python" install --quiet \
    --disable-pip-version-check --no-index --no-deps --force-reinstall "$TRAINUI_WHEEL" \
    2>&1 | grep -v "outside environment" || true
  [ -x "$env/bin/trainui" ] || {
    echo "error: installing $TRAINUI_WHEEL into $env gave no bin/trainui" >&2
    return 1
  }
  # The packages' commands (torchrun, accelerate, ...), as pip writes them
  # for an environment that has the packages: run by its own Python.
  local script name torch_bin
  torch_bin="$(dirname "$TRAINUI_PYTHON")"
  for script in "$torch_bin"/*; do
    name="$(basename "$script")"
    [ -f "$script" ] && [ ! -e "$env/bin/$name" ] || continue
    case "$(head -c 256 "$script" | tr -d '\000' | head -n 1)" in
      "#!$torch_bin/python"*) ;;
      *) continue ;;
    esac
    { echo "#!$env/bin/python"; tail -n +2 "$script"; } >"$env/bin/$name"
    chmod +x "$env/bin/$name"
  done
  local dir kept=("$env/bin")
  local IFS=:
  for dir in $PATH; do
    [ -n "$dir" ] && [ ! -x "$dir/cargo" ] && [ ! -x "$dir/rustc" ] && kept+=("$dir")
  done
  TRAINUI_WHEEL_PATH="${kept[*]}"
  TRAINUI_WHEEL_ENV="$env"
  export TRAINUI_WHEEL_ENV TRAINUI_WHEEL_PATH
}

# The programs the tests run besides trainui: tmux (the TUI tests drive the
# real program in it), OpenSSH's server (the tests of remote runs reach
# trainui over ssh on 127.0.0.1) and cargo-nextest (runs the tests, grouped
# and filtered by .config/nextest.toml).
trainui_test_tools() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  if ! command -v tmux >/dev/null; then
    echo "trainui: installing tmux for the terminal tests" >&2
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq tmux >/dev/null
  fi
  # The tests of remote runs start their own sshd on 127.0.0.1 (no service
  # is started); sshd needs its privilege separation folder.
  if [ ! -x /usr/sbin/sshd ]; then
    echo "trainui: installing openssh-server for the tests of remote runs" >&2
    "${sudo[@]}" apt-get update -qq &&
      "${sudo[@]}" apt-get install -y -qq openssh-server openssh-client >/dev/null
  fi
  [ -d /run/sshd ] || "${sudo[@]}" mkdir -p /run/sshd
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "trainui: installing cargo-nextest (once, a few minutes)" >&2
    cargo install --locked --quiet cargo-nextest
  fi
}

# Says how many tests `./dev test --fast` left out, Rust and Python.
trainui_say_left_out() {
  local all fast rust python
  all=$(cargo nextest list --release --workspace --message-format oneline 2>/dev/null | wc -l)
  fast=$(cargo nextest list --release --workspace --profile fast --message-format oneline \
    2>/dev/null | wc -l)
  rust=$((all - fast))
  python=$("$TRAINUI_PYTHON" -P -m pytest -q -p no:cacheprovider python/tests -m slow \
    --collect-only 2>/dev/null | grep -c '::' || true)
  echo "trainui: --fast left out $rust slow Rust tests and $python slow Python tests; ./dev test runs them"
}
