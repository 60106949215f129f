#!/bin/bash
# usage: hogrun.sh DIR LOG CMD...
dir=$1; log=$2; shift 2
python3 -c "while True: pass" & hog=$!
cd "$dir"
start=$(date +%s)
"$@" > "$log" 2>&1
rc=$?
kill $hog
echo "rc $rc elapsed $(( $(date +%s) - start ))s" >> "$log"
