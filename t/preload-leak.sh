#!/bin/sh
# t/preload-leak.sh: real programs run to their end under KALLOC_CONF=leak:1
# (every call on the checked slow path, a stack recorded per block, the heap
# scanned at exit), give the same output as without kalloc, and print the
# leak report on stderr, even those that close their stderr before exit
# (coreutils' close_stdout).
. "${srcdir:-.}/t/preload.sh"
conf=leak:1

# leak NAME COMMAND...: same stdout and exit 0 as without kalloc, and a report.
leak() {
	run_both "$@" || return 0
	if both_ok && grep -q '^kalloc: leak report: [0-9]* unreferenced objects' "$tmp/ka.err"; then
		say ok "$name: same output, exit 0, $(grep '^kalloc: leak report: ' "$tmp/ka.err" | head -1 | cut -d' ' -f4-)"
	else
		not_ok "leak report: $(grep -c '^kalloc: leak report: ' "$tmp/ka.err")"
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
