# Sourced by scripts/run and scripts/test: makes .venv match the lock files.
# Usage: source scripts/bootstrap.sh [dev]
# Re-installs only when requirements/*.txt changed since the last install.

_oneflow_python() {
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "OneFlow needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

_oneflow_bootstrap() {
    local profile="${1:-base}" locks=(requirements/base.txt) stamp digest
    [ "$profile" = dev ] && locks+=(requirements/dev.txt requirements/legacy-sdk.txt)
    if [ ! -x .venv/bin/python ]; then
        "$(_oneflow_python)" -m venv .venv || return 1
    fi
    digest=$(cat "${locks[@]}" | sha256sum | cut -c1-16)
    stamp=".venv/.installed-$profile-$digest"
    if [ ! -f "$stamp" ]; then
        echo "Installing OneFlow's locked dependencies ($profile) into .venv ..." >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
            $(printf -- '-r %s ' "${locks[@]:0:2}") || return 1
        if [ "$profile" = dev ]; then
            # An older anthropic SDK (0.x, X-Api-Key auth) for the compatibility
            # tests, kept apart from the current one.
            rm -rf .venv/legacy-sdk
            .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
                --target .venv/legacy-sdk -r requirements/legacy-sdk.txt || return 1
        fi
        rm -f .venv/.installed-"$profile"-*
        touch "$stamp"
    fi
    export PATH="$PWD/.venv/bin:$PATH"
}

_oneflow_bootstrap "$@"
