#!/bin/sh
# t/bench-smoke.sh BUILD: every benchmark program of bench/ runs to the end
# under kalloc in its quick mode and prints its result line (make
# check-bench; the timing itself is make bench's). Ends with
# "check-bench: N passed, M failed".
build=${1:-.}
lib=$build/lib/.libs/libkalloc.so
passed=0 failed=0
try() { # name pattern command...: ok if it exits 0 and its last line matches pattern
	name=$1 pattern=$2
	shift 2
	if out=$(LD_PRELOAD=$lib "$@" 2>&1) && echo "$out" | tail -n 1 | grep -qE "$pattern"; then
		echo "ok - $name: $(echo "$out" | tail -n 1 | cut -c1-70)"
		passed=$((passed + 1))
	else
		echo "not ok - $name: $(echo "$out" | tail -n 3)"
		failed=$((failed + 1))
	fi
}
for w in larson prodcons falseshare-active falseshare-passive falseshare-traded frag strbuild bigobj shortthreads \
	comego prodcons-mixed xthread64 bigmix cxxchurn; do
	try "$w" "^$w ops=[1-9][0-9]* check=" "$build/bench/wl/$w" quick 2
done
try "micro (every case once, briefly)" "^xthread/64/real_time/threads:4 " "$build/bench/micro" --benchmark_min_time=0.001
try "opcount (every single-thread case)" "^aligned_alloc4096/4096 2000$" "$build/bench/opcount" 2000
try "scale" "Mops/s" "$build/bench/scale" local 2 2000
echo "check-bench: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
