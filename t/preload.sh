# t/preload.sh: sourced by the t/preload-*.sh tests that run real programs
# with and without kalloc (the shell side of t/preload.h): the library under
# test or a skip of the whole test, a scratch directory removed at exit, TAP
# numbering, and the run of one command both ways.
lib=${KALLOC_LIB:-$(pwd)/lib/.libs/libkalloc.so}
if [ ! -f "$lib" ]; then
	echo "1..0 # SKIP no libkalloc.so at $lib"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0
say() { n=$((n + 1)); echo "$1 $n - $2"; }

# run_both NAME COMMAND...: false (and a skipped test) if COMMAND is not
# installed; else runs it in $tmp without kalloc, then under it with
# KALLOC_CONF=$conf if set: statuses in $pst and $kst, output in
# $tmp/plain.out, $tmp/ka.out and $tmp/ka.err.
run_both() {
	name=$1
	shift
	if ! command -v "$1" >/dev/null 2>&1; then
		say ok "# SKIP $name: $1 not installed"
		return 1
	fi
	(cd "$tmp" && "$@") >"$tmp/plain.out" 2>"$tmp/plain.err"
	pst=$?
	(cd "$tmp" && if [ -n "${conf:-}" ]; then export KALLOC_CONF="$conf"; fi &&
		LD_PRELOAD="$lib" "$@") >"$tmp/ka.out" 2>"$tmp/ka.err"
	kst=$?
}

# both_ok: both runs exited 0 with the same output.
both_ok() { [ "$pst" -eq 0 ] && [ "$kst" -eq 0 ] && cmp -s "$tmp/plain.out" "$tmp/ka.out"; }

# not_ok WHAT: a failed test line, the difference and kalloc's stderr.
not_ok() {
	say "not ok" "$name: exit $pst without kalloc, $kst with it${1:+; $1}"
	diff "$tmp/plain.out" "$tmp/ka.out" | head -5 | sed 's/^/# /'
	grep -v '^    \[' "$tmp/ka.err" | tail -10 | sed 's/^/# stderr: /'
	fails=$((fails + 1))
}
