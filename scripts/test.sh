#!/usr/bin/env bash
# Runs Tiller's whole test suite on a fresh machine: installs what is missing (scripts/setup.sh),
# building the tests' configuration only, then `swift test`. Model-dependent tests must not be skipped: TILLER_REQUIRE_MODELS=1 makes a
# missing model a failure, and this script fails if XCTest reports any skipped test.
# The last line it prints is "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
TILLER_BUILD=tests bash scripts/setup.sh
export TILLER_REQUIRE_MODELS=1
# The Vulkan backend's tests run on Mesa's lavapipe (setup.sh installs it): a missing device fails them.
export TILLER_REQUIRE_VULKAN=1
log=$(mktemp)
set +e
swift test --disable-swift-testing "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# XCTest's overall line: "Executed N tests, with M failures (U unexpected) in …" (the last one).
summary=$(grep -E "^\s*Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -n 1 || true)
if grep -Eq "Test Case .* skipped|with [1-9][0-9]* tests? skipped|\([1-9][0-9]* skipped\)" "$log"; then
    echo "error: some tests were skipped; model-dependent tests must run (see above)"
    status=1
fi
if [ -z "$summary" ]; then
    echo "error: no XCTest summary found: the test run did not complete"
    echo "0 passed, 1 failed"
    exit 1
fi
executed=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$((executed - failed)) passed, $failed failed"
exit "$status"
