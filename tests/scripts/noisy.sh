#!/bin/sh
# Writes far more output than jitbot keeps (100 kB to each stream).
head -c 100000 /dev/zero | tr '\0' 'o'
head -c 100000 /dev/zero | tr '\0' 'e' >&2
