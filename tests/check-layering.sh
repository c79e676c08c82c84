#!/bin/bash
# The layering the build enforces through include paths (Makefile, LAYERS)
# cannot be got around with relative includes: no #include may climb out of
# its folder. Prints the offending lines and fails.
set -u
cd "$(dirname "$0")/.."
bad=$(grep -rnE '#include[[:space:]]*"[^"]*\.\./' driver agent --include='*.[ch]')
if [ -n "$bad" ]; then
	echo "relative includes get around the layering (use the include path the build gives each folder):"
	echo "$bad"
	exit 1
fi
