#!/usr/bin/env bash
# Runs Tiller's whole test suite on a fresh machine: installs what is missing (scripts/setup.sh),
# then `swift test`. Model-dependent tests must not be skipped: TILLER_REQUIRE_MODELS=1 makes a
# missing model a failure, and this script fails if XCTest reports any skipped test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TILLER_REQUIRE_MODELS=1
log=$(mktemp)
set +e
swift test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -Eq '\([1-9][0-9]* skipped\)|with [1-9][0-9]* tests? skipped| skipped [1-9]' "$log"; then
    echo "error: some tests were skipped; model-dependent tests must run (see above)"
    exit 1
fi
exit "$status"
