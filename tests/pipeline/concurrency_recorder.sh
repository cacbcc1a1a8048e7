#!/bin/sh
# An --exec processor for load-leveling tests: records how many copies of it
# run at once and when each started, then prints the sum of the chunk's values.
# Usage: concurrency_recorder.sh DIR [SECONDS]
# Under an flock on DIR/lock it bumps DIR/running and appends
# "start <epoch s> <running> <batch> <chunk>" to DIR/log, sleeps SECONDS
# (default 0.05), then decrements DIR/running. Plain sh: a copy starts in a
# few ms even on a loaded machine.
dir=$1
pause=${2:-0.05}
sum=$(grep -o '"value":-\{0,1\}[0-9]*' | awk -F: '{ s += $2 } END { print s + 0 }')
(
  flock 9
  n=$(( $(cat "$dir/running" 2>/dev/null || echo 0) + 1 ))
  echo "$n" > "$dir/running"
  echo "start $(date +%s.%N) $n ${FANFLOW_BATCH_ID:-?} ${FANFLOW_CHUNK_INDEX:-?}" >> "$dir/log"
) 9>>"$dir/lock"
sleep "$pause"
(
  flock 9
  echo $(( $(cat "$dir/running") - 1 )) > "$dir/running"
) 9>>"$dir/lock"
echo "$sum"
