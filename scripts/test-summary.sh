#!/usr/bin/env bash
# Adds up cargo test's "test result:" lines from a log and prints one closing line,
# "N passed, N failed, N skipped", so the whole run ends on its real totals.
set -euo pipefail
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed/) p += $i
         if ($(i+1) ~ /^failed/) f += $i
         if ($(i+1) ~ /^ignored/) s += $i
       }
     }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s; exit (f > 0) }' "$1"
