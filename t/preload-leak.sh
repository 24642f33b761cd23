#!/bin/sh
# t/preload-leak.sh: real programs run to their end under KALLOC_CONF=leak:1
# (every call on the checked slow path, a stack recorded per block, the heap
# scanned at exit), give the same output as without kalloc, and print the
# leak report on stderr, even those that close their stderr before exit
# (coreutils' close_stdout).
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

# leak NAME COMMAND...: same stdout and exit 0 as without kalloc, and a report.
leak() {
	name=$1
	shift
	if ! command -v "$1" >/dev/null 2>&1; then
		say ok "# SKIP $name: $1 not installed"
		return
	fi
	(cd "$tmp" && "$@") >"$tmp/plain.out" 2>"$tmp/plain.err"
	pst=$?
	(cd "$tmp" && KALLOC_CONF=leak:1 LD_PRELOAD="$lib" "$@") >"$tmp/ka.out" 2>"$tmp/ka.err"
	kst=$?
	if [ "$pst" -eq 0 ] && [ "$kst" -eq 0 ] && cmp -s "$tmp/plain.out" "$tmp/ka.out" &&
		grep -q '^kalloc: leak report: [0-9]* unreferenced objects' "$tmp/ka.err"; then
		say ok "$name: same output, exit 0, $(grep '^kalloc: leak report: ' "$tmp/ka.err" | head -1 | cut -d' ' -f4-)"
	else
		say "not ok" "$name: exit $pst without kalloc, $kst with leak:1"
		diff "$tmp/plain.out" "$tmp/ka.out" | head -5 | sed 's/^/# /'
		grep -v '^    \[' "$tmp/ka.err" | tail -10 | sed 's/^/# stderr: /'
		fails=$((fails + 1))
	fi
}

cat >"$tmp/py.py" <<'PY'
import threading, hashlib
out = {}
def work(k):
    d = {}
    for i in range(20000):
        d["k%d-%d" % (k, i)] = ("v" * (i % 300)) + str(i)
    for i in range(0, 20000, 2):
        del d["k%d-%d" % (k, i)]
    out[k] = hashlib.sha256(str(sorted(d)[:100]).encode()).hexdigest()
ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
for k in sorted(out): print(k, out[k])
PY
# The interpreter itself, not a wrapper script (pyenv shims run bash first).
PY=$(python3 -c "import sys; print(sys.executable)" 2>/dev/null || echo python3)
leak "python3 threads, dicts, strings (PYTHONMALLOC=malloc)" env PYTHONMALLOC=malloc "$PY" "$tmp/py.py"
leak "python3 -c, its own allocator" "$PY" -c 'import json; print(len(json.dumps({str(i): [i] * 5 for i in range(20000)})))'
leak "ls -la of /usr/bin (closes its stderr at exit)" ls -la /usr/bin
awk 'BEGIN { s = 1; for (i = 0; i < 50000; i++) { s = (s * 1103515245 + 12345) % 2147483648; print s % 1000003, "line", i } }' >"$tmp/in.txt"
leak "sort of a 50k-line file" sort "$tmp/in.txt"
echo "1..$n"
[ "$fails" -eq 0 ]
