#!/bin/sh
# t/preload-programs.sh: real programs under LD_PRELOAD=libkalloc.so give
# the same output as without it and exit 0.
. "${srcdir:-.}/t/preload.sh"

# same NAME COMMAND...: run with and without kalloc, compare stdout and status.
same() {
	run_both "$@" || return 0
	if both_ok; then
		say ok "$name: same output ($(wc -c <"$tmp/ka.out") bytes), exit 0"
	else
		not_ok
	fi
}

cat >"$tmp/py.py" <<'PY'
import threading, hashlib
out = {}
def work(k):
    d = {}
    for i in range(60000):
        d["k%d-%d" % (k, i)] = ("v" * (i % 300)) + str(i)
    s = "".join(d[x] for x in sorted(d)[:5000])
    for i in range(0, 60000, 2):
        del d["k%d-%d" % (k, i)]
    out[k] = hashlib.sha256((s + str(len(d))).encode()).hexdigest()
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
for k in sorted(out): print(k, out[k])
PY
PY=$(command -v python3 || echo python3)
same "python3 threads, dicts, strings" env PYTHONMALLOC=malloc "$PY" "$tmp/py.py"
# Under a 200 MB address-space limit the free fast path's flat tag table
# (128 GiB reserved) cannot be had: every free then takes the slow path.
same "perl under ulimit -v 200000 (no flat tag table)" sh -c 'ulimit -v 200000 && exec perl -e '"'"'my %h; for my $i (1..100000) { $h{"k$i"} = "x" x ($i % 300) } delete $h{"k$_"} for 1..50000; print scalar(keys %h), "\n";'"'"''
same "perl hash and string churn" perl -e 'my %h; for my $i (1..200000) { $h{"k$i"} = "x" x ($i % 200) } my $s = 0; for my $k (sort keys %h) { $s += length($h{$k}); delete $h{$k} if $k =~ /7/ } print scalar(keys %h), " $s\n";'
awk 'BEGIN { s = 1; for (i = 0; i < 200000; i++) { s = (s * 1103515245 + 12345) % 2147483648; print s % 1000003, "line", i } }' >"$tmp/in.txt"
same "sort of a 200k-line file" sort "$tmp/in.txt"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t \
	GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' GIT_COMMITTER_DATE='2026-01-01T00:00:00Z' HOME="$tmp"
same "git init, commit, log" sh -c 'rm -rf r && git init -q r && cd r && for i in 1 2 3; do seq $i 5000 > f$i; git add . && git commit -qm "c$i"; done && git log --stat'
same "sqlite3 100k rows and an aggregate" sqlite3 :memory: "create table t(a integer, b text); with recursive c(x) as (select 1 union all select x+1 from c where x < 120000) insert into t select x, hex(randomblob(0)) || x from c; select count(*), sum(a), max(length(b)) from t group by a % 7 order by 1, 2;"
cat >"$tmp/p.cc" <<'CC'
#include <iostream>
#include <map>
#include <string>
#include <vector>
struct alignas(64) A { char c[100]; };
int main() {
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 100000; i++) m[std::to_string(i % 5000)].push_back(i);
    long s = 0;
    for (auto &kv : m) s += kv.second.size() * kv.first.size();
    A *a = new A[100];
    std::cout << s << " " << (reinterpret_cast<unsigned long>(a) % 64) << "\n";
    delete[] a;
}
CC
same "g++ compiling a C++ file" g++ -O1 -o "$tmp/p" "$tmp/p.cc"
same "the compiled C++ program (new/delete, aligned new)" "$tmp/p"
echo "1..$n"
[ "$fails" -eq 0 ]
