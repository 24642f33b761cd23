#!/bin/sh
# callgrind-ops.sh [LIB...]: instructions per iteration of bench/fastpath.c's
# loops under glibc and each preload library given (default: jemalloc and
# the build tree's kalloc), counted by callgrind: repeatable on a noisy
# machine. Each figure is the difference of two runs (300k - 100k
# iterations) / 200k, so start-up cost cancels; it includes the loop itself
# (a few instructions) and the PLT.
here=$(cd "$(dirname "$0")/.." && pwd)
exe=$(mktemp)
trap 'rm -f "$exe" "$exe".cg.*' EXIT
${CC:-cc} -O2 -o "$exe" "$here/bench/fastpath.c" || exit 1
[ $# -gt 0 ] || set -- /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 "$here/lib/.libs/libkalloc.so"
count() { # lib mode n
	valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$exe.cg.%p" \
		env ${1:+LD_PRELOAD=$1} "$exe" "$2" "$3" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -n 1
}
printf '%-50s %8s %8s\n' allocator pair ring
for lib in "" "$@"; do
	[ -z "$lib" ] || [ -f "$lib" ] || { echo "$lib: missing" >&2; continue; }
	line=$(printf '%-50s' "${lib:-glibc}")
	for mode in pair ring; do
		a=$(count "$lib" $mode 100000)
		b=$(count "$lib" $mode 300000)
		line="$line $(printf '%8d' $(((b - a) / 200000)))"
	done
	echo "$line"
done
