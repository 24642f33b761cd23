#!/bin/sh
# t/prof-tool.sh: tools/kalloc-prof reads a heap_v2 profile and prints its
# top sites, unbiased as google-pprof does, biggest first, named through the
# MAPPED_LIBRARIES section (and addr2line); malformed files are refused.
# The fixture is made from a real binary: t/prof-sites prints return
# addresses inside its functions site_big, site_small and main, and its own
# /proc/self/maps; the stacks get a first frame inside a libkalloc mapping
# (kalloc's own malloc), which the table must look past. The big site is
# split over two stacks (different callers), which the table must merge.
prof=./tools/kalloc-prof
sites=./t/prof-sites
. "${srcdir:-.}/t/tap.sh"
[ -x "$prof" ] && [ -x "$sites" ] || { echo "1..0 # SKIP no $prof or $sites (make check builds them)"; exit 0; }
echo "1..12"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

$sites maps >"$tmp/maps.out" || { echo "Bail out! $sites maps failed"; exit 1; }
big=$(awk '$1 == "big" { print $2 }' "$tmp/maps.out")
small=$(awk '$1 == "small" { print $2 }' "$tmp/maps.out")
main=$(awk '$1 == "main" { print $2 }' "$tmp/maps.out")
rate=524288
# site_big: 600 + 400 samples of 4096 B (two stacks); site_small: 10 of 65536 B.
{
	echo "heap profile: 1010: 4751360 [ 1010: 4751360] @ heap_v2/$rate"
	echo "# a comment line, as kalloc writes one"
	echo "600: 2457600 [ 600: 2457600] @ 0x10010 $big $main"
	echo "10: 655360 [ 10: 655360] @ 0x10020 $small $main"
	echo "400: 1638400 [ 400: 1638400] @ 0x10010 $big 0x1234"
	echo
	echo "MAPPED_LIBRARIES:"
	echo "00010000-00020000 r-xp 00000000 fe:00 1                          /usr/lib/x86_64-linux-gnu/libkalloc.so.0.0.0"
	sed 1,3d "$tmp/maps.out"
} >"$tmp/good.heap"
# Expected estimates: count * 1/(1 - exp(-avg/rate)) per line, in MiB.
est() { awk -v n="$1" -v b="$2" -v r=$rate 'BEGIN { printf "%.6f\n", b / (1 - exp(-(b / n) / r)) / 1048576 }'; }
e_big=$(awk -v a="$(est 600 2457600)" -v b="$(est 400 1638400)" 'BEGIN { printf "%.6f\n", a + b }')
e_small=$(est 10 655360)
e_objs=$(awk -v r=$rate 'BEGIN { printf "%.0f\n", 1000 / (1 - exp(-4096 / r)) }')

$prof "$tmp/good.heap" >"$tmp/table" 2>"$tmp/err"
ok $? "kalloc-prof reads the fixture"
sed 's/^/# /' "$tmp/table"
# Rows: MiB % objects site...
rows=$(awk '$1 ~ /^[0-9.]+$/ && NF >= 4' "$tmp/table")
row1=$(echo "$rows" | sed -n 1p)
row2=$(echo "$rows" | sed -n 2p)
[ "$(echo "$rows" | wc -l)" -eq 2 ]
ok $? "two sites: the big one's two stacks merge into one row"
near() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= tol) }'; }
got_big=$(echo "$row1" | awk '{ print $1 }')
got_small=$(echo "$row2" | awk '{ print $1 }')
near "$got_big" "$e_big" 0.006
ok $? "first row is the big site, with its unbiased estimate: $got_big MiB (expected $e_big)"
near "$got_small" "$e_small" 0.006
ok $? "second row is the small site: $got_small MiB (expected $e_small)"
near "$(echo "$row1" | awk '{ print $3 }')" "$e_objs" 1
ok $? "the big site's estimated objects: $(echo "$row1" | awk '{ print $3 }') (expected $e_objs)"
total=$(sed -n 's/^estimated in use: \([0-9.]*\) MiB.*/\1/p' "$tmp/table")
near "$total" "$(awk -v a="$e_big" -v b="$e_small" 'BEGIN { print a + b }')" 0.006 &&
	grep -q "one sample per $rate bytes" "$tmp/table"
ok $? "header: the rate and the estimated total in use ($total MiB)"
! grep -q libkalloc "$tmp/table" && echo "$row1" | grep -q 'prof-sites+0x' && echo "$row2" | grep -q 'prof-sites+0x'
ok $? "sites are the first frames outside libkalloc, in prof-sites"
if command -v addr2line >/dev/null; then
	echo "$row1" | grep -q ' site_big ' && echo "$row2" | grep -q ' site_small '
	ok $? "addr2line names site_big and site_small"
else
	skip "no addr2line"
fi

# Malformed files: exit 1 and a message that names the file (and the line).
bad=0
case_bad() { # name [sed script]
	if [ $# -gt 1 ]; then sed "$2" "$tmp/good.heap" >"$tmp/$1.heap"; fi
	$prof "$tmp/$1.heap" >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ $st -ne 1 ] || ! grep -q "^kalloc-prof: $tmp/$1.heap" "$tmp/err" || [ -s "$tmp/out" ]; then
		echo "# $1: exit $st, stderr: $(cat "$tmp/err")"
		bad=$((bad + 1))
	fi
}
case_bad truncated '/^MAPPED_LIBRARIES:/,$d'
case_bad v1 '1s|heap_v2/|heap/|'
case_bad nospace '3s/: /:/g'
case_bad frame '3s/@ 0x10010/@ 0xzz/'
case_bad count '4s/^10:/ten:/'
case_bad maps '$s/^/x/'
: >"$tmp/empty.heap"
case_bad empty
printf 'heap profile: 1: 8 [ 1: 8] @ heap_v2/1\n1: 8 [ 1: 8] @ 0x1\0\n' >"$tmp/nul.heap"
case_bad nul
[ $bad -eq 0 ]
ok $? "8 malformed files (truncated, v1 header, no blank after a colon, bad frame, bad count, bad mapping, empty, NUL byte): exit 1 with a message"
$prof "$tmp/missing.heap" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q 'missing.heap' "$tmp/err"
ok $? "a missing file: exit 1 with a message"
if command -v readelf >/dev/null; then
	! readelf -d "$prof" | grep -q 'NEEDED.*libkalloc'
	ok $? "kalloc-prof is not linked with libkalloc (it must not profile itself)"
else
	skip "no readelf"
fi

# google-pprof reads the same file and agrees: this checks the format facts.
if command -v google-pprof >/dev/null; then
	google-pprof --text "$sites" "$tmp/good.heap" >"$tmp/pprof" 2>"$tmp/pprof.err"
	st=$?
	sed 's/^/# /' "$tmp/pprof"
	ptotal=$(sed -n 's/^Total: \([0-9.]*\) MB$/\1/p' "$tmp/pprof")
	[ $st -eq 0 ] && grep -q 'Heap version 2' "$tmp/pprof.err" && grep -q ' site_big$' "$tmp/pprof" &&
		near "$ptotal" "$total" 0.06
	ok $? "google-pprof --text reads the fixture as heap_v2 and finds the same total ($ptotal MB)"
else
	skip "no google-pprof"
fi
[ $fails -eq 0 ]
