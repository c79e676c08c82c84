#!/bin/bash
# One full integration scenario (register, list, allocate, health change,
# kubelet restart, SIGTERM) with the agent under valgrind memcheck. Any memory
# error or definite/indirect leak makes the agent exit 99 and the test fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
supp=$here/valgrind.supp
export XEVF_AGENT_WRAPPER="valgrind --leak-check=full --show-leak-kinds=definite,indirect \
 --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --suppressions=$supp"
exec "$here/run-integration.sh" -k "full_lifecycle or bad_config_exits_2" "$@"
