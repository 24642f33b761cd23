#!/bin/sh
# callgrind-ops.sh [BUILD]: instructions per operation of every
# single-thread micro case (bench/micro.c, driven by bench/opcount) under
# glibc, jemalloc, tcmalloc, mimalloc (those installed) and the build
# tree's kalloc, counted by callgrind: repeatable on a noisy machine.
# Each figure is one dump of N operations after a warm-up, divided by N,
# less the case's loop: its count under bench/stub.c (calls that return at
# once) minus STUB_OWN, the stub's own instructions and PLT jumps per
# operation. What is left is the allocator's work, its PLT jumps included.
# The "loop" column is what was subtracted. Writes the table
# to stdout and to BUILD/bench/results/opcount.md.
build=${1:-.}
exe=$build/bench/opcount
lib=/usr/lib/x86_64-linux-gnu
[ -x "$exe" ] || { echo "callgrind-ops: $exe not built (make bench/opcount)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "callgrind-ops: valgrind not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$(cd "$(dirname "$0")/.." && pwd)
${CC:-cc} -O2 -shared -fPIC -fvisibility=hidden -o "$tmp/libstub.so" "$src/bench/stub.c" ||
	{ echo "callgrind-ops: cannot build bench/stub.c" >&2; exit 1; }
# The dynamic loader preloads the library for the program alone: with
# LD_PRELOAD in its environment, valgrind's own launcher would load it too.
ldso=$(ls /lib64/ld-linux-x86-64.so.2 2>/dev/null || echo /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)
n=${OPCOUNT_N:-200000} # operations per case (opcount divides by 100 for big blocks)
names=""
STUB_OWN=5 # two PLT jumps, malloc's lea and ret, free's ret (bench/stub.c)
for a in loop:$tmp/libstub.so glibc: jemalloc:$lib/libjemalloc.so.2 tcmalloc:$lib/libtcmalloc_minimal.so.4 \
	mimalloc:$lib/libmimalloc.so.2 kalloc:$build/lib/.libs/libkalloc.so; do
	name=${a%%:*} so=${a#*:}
	if [ -n "$so" ] && [ ! -f "$so" ]; then
		echo "callgrind-ops: $name not installed ($so), left out" >&2
		continue
	fi
	valgrind --tool=callgrind --collect-atstart=no \
		--callgrind-out-file="$tmp/$name.%p" $ldso ${so:+--preload "$so"} "$exe" $n \
		>"$tmp/$name.cases" 2>"$tmp/$name.log" || { echo "callgrind-ops: $name failed" >&2; cat "$tmp/$name.log" >&2; continue; }
	# One dump per case: "desc: Trigger: Client Request: CASE" ... "totals: I";
	# opcount printed "CASE N" for each.
	for f in "$tmp/$name".*.*; do
		awk '/^desc: Trigger: Client Request:/ { c = $5 }
			/^(summary|totals):/ { if (c != "") print c, $2; exit }' "$f"
	done >"$tmp/$name.ins"
	awk 'NR == FNR { ins[$1] = $2; next } { printf "%s %.1f\n", $1, ins[$1] / $2 }' \
		"$tmp/$name.ins" "$tmp/$name.cases" >"$tmp/$name.raw"
	if [ "$name" = loop ]; then
		awk -v own=$STUB_OWN '{ printf "%s %.1f\n", $1, $2 - own }' "$tmp/loop.raw" >"$tmp/loop.ops"
	else
		awk 'NR == FNR { loop[$1] = $2; next } { printf "%s %.1f\n", $1, $2 - loop[$1] }' \
			"$tmp/loop.ops" "$tmp/$name.raw" >"$tmp/$name.ops"
	fi
	names="$names $name"
done
{
	printf '| case (instructions per op, loop subtracted) |'
	for a in $names; do printf ' %s |' "$a"; done
	printf '\n|---|'
	for a in $names; do printf -- '---:|'; done
	echo
	first=$(echo $names | cut -d' ' -f1)
	for c in $(cut -d' ' -f1 "$tmp/$first.ops"); do
		printf '| %s |' "$c"
		for a in $names; do printf ' %s |' "$(awk -v c="$c" '$1 == c { print $2 }' "$tmp/$a.ops")"; done
		echo
	done
} | tee "$tmp/table"
mkdir -p "$build/bench/results" && cp "$tmp/table" "$build/bench/results/opcount.md"
