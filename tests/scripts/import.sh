#!/bin/sh
# A one-shot action: "imports" data, counts its runs in $MARKER_DIR/runs,
# fails when $MARKER_DIR/fail-run exists.
set -eu
echo "run" >> "$MARKER_DIR/runs"
if [ -e "$MARKER_DIR/fail-run" ]; then
  echo "import failed: source bucket is empty" >&2
  exit 1
fi
echo "imported 42 rows for project $1 as requested by $JITBOT_USER_EMAIL <&>"
