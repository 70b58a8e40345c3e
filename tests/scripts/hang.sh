#!/bin/sh
# Never finishes by itself: starts a child that would outlive a killed
# parent if only the parent were killed, records its pid, and waits.
echo "starting"
sleep 300 &
echo $! > "$MARKER_DIR/child.pid"
wait
echo "never printed"
