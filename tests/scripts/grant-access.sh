#!/bin/sh
# A stand-in for a real grant/revoke program (kubectl, a cloud CLI): records
# what it was called with in $MARKER_DIR, then succeeds, or fails when
# $MARKER_DIR/fail-$JITBOT_ACTION exists.
set -eu
out="$MARKER_DIR/$JITBOT_ACTION-$JITBOT_REQUEST_ID"
{
  echo "args:"
  for a in "$@"; do echo "  [$a]"; done
  echo "env:"
  env | sort
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "$JITBOT_ACTION $JITBOT_REQUEST_ID" >> "$MARKER_DIR/calls"
if [ -e "$MARKER_DIR/fail-$JITBOT_ACTION" ]; then
  echo "checking access for $JITBOT_USER_EMAIL"
  echo "boom: the target refused" >&2
  exit 3
fi
echo "$JITBOT_ACTION done for $JITBOT_USER_EMAIL ($JITBOT_ROLE)"
