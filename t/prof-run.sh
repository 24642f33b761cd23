#!/bin/sh
# t/prof-run.sh: tools/kalloc-run --prof runs the program as a child with
# prof:1 and a prof_file in a new directory, keeps its stdout and its exit
# status (128+N when signal N killed it), then prints the top sites of the
# program's own profile (through kalloc-prof, or google-pprof) and where the
# profile is, naming the forked children's profiles too. t/prof-sites fake
# stands in for the library's writer; the last case profiles a real run and
# skips until the library knows prof:1.
run=./tools/kalloc-run
sites=./t/prof-sites
. "${srcdir:-.}/t/tap.sh"
[ -n "$KALLOC_LIB" ] && [ -f "$KALLOC_LIB" ] || { echo "1..0 # SKIP KALLOC_LIB not set"; exit 0; }
[ -x "$run" ] && [ -x "$sites" ] && [ -x ./tools/kalloc-prof ] || { echo "1..0 # SKIP make check builds $run, $sites, kalloc-prof"; exit 0; }
echo "1..11"
tmp=$(mktemp -d)
export TMPDIR="$tmp"
trap 'rm -rf "$tmp"' EXIT
unset KALLOC_CONF KALLOC_PPROF
show() { sed 's/^/# /' "$1"; }
# The profile kalloc-run names, and the other files of its directory.
named() { sed -n 's/^kalloc-run: heap profile of .*: \(.*\.heap\) (.*/\1/p' "$1"; }

out=$($run --prof $sites hold 3 2>"$tmp/err")
st=$?
[ $st -eq 3 ] && [ "$out" = held ]
ok $? "exit status 3 and the program's stdout are kept (status $st, stdout '$out')"
out=$($run --prof $sites kill 2>"$tmp/err")
st=$?
[ $st -eq 137 ] && [ "$out" = held ] && grep -q 'killed by signal 9' "$tmp/err"
ok $? "killed by SIGKILL: exit status 137, and kalloc-run says so (status $st)"
[ $st -eq 137 ] || show "$tmp/err"

out=$(KALLOC_CONF=stats:0 $run --prof-sample 4096 sh -c 'echo "$$ $LD_PRELOAD $KALLOC_CONF"' 2>"$tmp/err")
pid=${out%% *}
case $out in
"$pid $(dirname "$KALLOC_LIB")/"libkalloc.so*" stats:0,prof_sample:4096,prof:1,prof_file:$tmp/kalloc-prof."??????"/kalloc.%p.heap") r=0 ;;
*) r=1 ;;
esac
grep -q "(pid $pid," "$tmp/err" || grep -q "kalloc\.$pid\.heap" "$tmp/err" || r=1
ok $r "the child gets LD_PRELOAD, KALLOC_CONF with prof:1 and prof_file in a new directory, and kalloc-run knows its pid"
[ $r -eq 0 ] || { echo "# $out"; show "$tmp/err"; }

out=$(KALLOC_PPROF= $run --prof $sites fake 5 2>"$tmp/err")
st=$?
file=$(named "$tmp/err")
rows=$(awk '$1 ~ /^[0-9.]+$/ && NF >= 4' "$tmp/err")
r=0
[ $st -eq 5 ] && [ "$out" = faked ] && [ -f "$file" ] && grep -q "^kalloc-prof: $file: heap_v2" "$tmp/err" || r=1
case $file in "$tmp"/kalloc-prof.*/kalloc.[0-9]*.heap) ;; *) r=1 ;; esac
[ "$(ls "$(dirname "${file:-/nonexistent}")")" = "$(basename "${file:-none}")" ] || r=1
ok $r "KALLOC_PPROF empty: kalloc-prof's table of the profile, left at the path printed, alone in its directory; exit status 5 kept"
[ $r -eq 0 ] || show "$tmp/err"
if command -v addr2line >/dev/null; then
	echo "$rows" | sed -n 1p | grep -q ' site_big ' && echo "$rows" | sed -n 2p | grep -q ' site_small '
	ok $? "the table's sites: site_big, then site_small (past kalloc's malloc)"
else
	skip "no addr2line"
fi

KALLOC_PPROF= $run --prof $sites fake fork >/dev/null 2>"$tmp/err"
file=$(named "$tmp/err")
others=$(sed -n 's/^kalloc-run: profiles of other processes (forked children): //p' "$tmp/err")
r=0
[ -f "$file" ] && [ -n "$others" ] && [ "$others" != "$file" ] || r=1
for f in $others; do
	[ -f "$f" ] && [ "$(dirname "$f")" = "$(dirname "$file")" ] || r=1
done
# The table is the parent's (1000 + 10 blocks), not the child's (200).
grep -q "^kalloc-prof: $file: .* 1010 samples of 2 stacks" "$tmp/err" || r=1
ok $r "a forked child's profile is named beside the program's own, whose table is shown"
[ $r -eq 0 ] || show "$tmp/err"

$run --prof-sample 4k true 2>"$tmp/err"
[ $? -eq 2 ] && grep -q 'prof-sample' "$tmp/err"
ok $? "--prof-sample wants a number of bytes (exit 2)"

if command -v google-pprof >/dev/null; then
	KALLOC_PPROF=google-pprof $run --prof $sites fake >/dev/null 2>"$tmp/err"
	grep -q "by google-pprof --text $(pwd)/t/prof-sites " "$tmp/err" && grep -q '^Total: ' "$tmp/err" &&
		grep -q '% site_big$' "$tmp/err"
	r=$?
	ok $r "with google-pprof: its --text table, of the executable the profile names"
	[ $r -eq 0 ] || show "$tmp/err"
else
	skip "no google-pprof"
fi
# ^C: the terminal's SIGINT goes to the whole process group; the program
# dies of it, kalloc-run outlives it to report, and exits 130.
$sites session $run --prof $sites wait >"$tmp/out" 2>"$tmp/err" &
leader=$!
for i in $(seq 100); do grep -q waiting "$tmp/out" && break; sleep 0.1; done
kill -INT -$leader
wait $leader
st=$?
[ $st -eq 130 ] && grep -q 'killed by signal 2 (INT)' "$tmp/err"
ok $? "SIGINT to the process group: the program dies of it, kalloc-run reports and exits 130 (status $st)"

# A reader that records its environment, then fails.
printf '#!/bin/sh\necho "[$LD_PRELOAD][$KALLOC_CONF]" >"%s"\nexit 1\n' "$tmp/env" >"$tmp/reader"
chmod +x "$tmp/reader"
KALLOC_PPROF=$tmp/reader KALLOC_CONF=stats:0 $run --prof $sites fake >/dev/null 2>"$tmp/err"
grep -q "^kalloc-run: $tmp/reader failed" "$tmp/err" && grep -q '^kalloc-prof: ' "$tmp/err" &&
	[ "$(cat "$tmp/env")" = "[][]" ]
ok $? "the reader runs without LD_PRELOAD and KALLOC_CONF; when it fails, kalloc-prof's table instead"

# The library's own profile of a real run: one sample per 4096 bytes, so
# site_big's 1000 x 4096 B give about 632 samples and its estimate is within
# 10% of 3.91 MiB (4 standard deviations); site_small's 10 x 64 KiB are all
# sampled (0.62 MiB).
if ! env KALLOC_CONF=help LD_PRELOAD="$KALLOC_LIB" /bin/true 2>&1 | grep -q '^ *prof '; then
	skip "the library has no prof option yet (KALLOC_CONF=help does not list it)"
else
	KALLOC_PPROF= $run --prof-sample 4096 $sites hold >/dev/null 2>"$tmp/err"
	st=$?
	file=$(named "$tmp/err")
	rows=$(awk '$1 ~ /^[0-9.]+$/ && NF >= 4' "$tmp/err")
	big=$(echo "$rows" | awk '/ site_big / { print $1; exit }')
	small=$(echo "$rows" | awk '/ site_small / { print $1; exit }')
	within() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a >= 0.9 * b && a <= 1.1 * b) }'; }
	r=0
	[ $st -eq 0 ] && [ -f "$file" ] && [ "$(ls "$(dirname "$file")")" = "$(basename "$file")" ] || r=1
	if command -v addr2line >/dev/null; then
		echo "$rows" | sed -n 1p | grep -q ' site_big ' && within "$big" 3.90625 && within "$small" 0.625 || r=1
	fi
	ok $r "a real profile (prof_sample:4096): site_big ${big:-?} MiB of 3.91, site_small ${small:-?} of 0.62"
	[ $r -eq 0 ] || show "$tmp/err"
fi
[ $fails -eq 0 ]
