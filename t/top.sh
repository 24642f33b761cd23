#!/bin/sh
# t/top.sh: tools/kalloc-top reads the counters a running process publishes
# (KALLOC_CONF=publish:1): its tables show what the process holds; a fork
# child publishes its own; the files go away when the processes exit.
# The process is t/stats's "hold" case: 5000 x 200 B in the parent, plus
# 3000 x 1000 B in the forked child.
top=./tools/kalloc-top
. "${srcdir:-.}/t/tap.sh"
[ -n "$KALLOC_LIB" ] && [ -f "$KALLOC_LIB" ] || { echo "1..0 # SKIP KALLOC_LIB not set"; exit 0; }
[ -d /dev/shm ] && [ -w /dev/shm ] || { echo "1..0 # SKIP no writable /dev/shm"; exit 0; }
echo "1..7"
tmp=$(mktemp -d)
trap 'touch "$tmp/stop"; rm -rf "$tmp"' EXIT
T_STOP_FILE=$tmp/stop KALLOC_CONF=publish:1,tcache_max:0 LD_PRELOAD=$KALLOC_LIB ./t/stats child hold >"$tmp/out" 2>&1 &
for i in $(seq 100); do grep -q child= "$tmp/out" && break; sleep 0.1; done
pid=$(sed -n 's/^pid=\([0-9]*\) child=.*/\1/p' "$tmp/out")
kid=$(sed -n 's/.* child=\([0-9]*\)$/\1/p' "$tmp/out")
sleep 0.6 # a publishing period or two
$top -n 1 "$pid" >"$tmp/parent" 2>&1
ok $? "kalloc-top -n 1 reads pid $pid"
# columns: OBJS ACTIVE USE OBJ-SIZE SLABS OBJ/SLAB CACHE-SIZE(2 words) [CHANGE] NAME
active() { awk -v c="$2" '$NF == c { print $2 }' "$1"; }
a=$(active "$tmp/parent" kmalloc-224)
[ "${a:-0}" -ge 5000 ]
ok $? "the parent's table shows its 5000 objects of kmalloc-224 (${a:-none})"
grep -q "kalloc-top  pid $pid" "$tmp/parent" && grep -q "buddyinfo" "$tmp/parent" && grep -q "in use" "$tmp/parent"
ok $? "header with pid, totals and a buddyinfo table"
$top -n 1 "$kid" >"$tmp/child" 2>&1
b=$(active "$tmp/child" kmalloc-1k)
pb=$(active "$tmp/parent" kmalloc-1k)
[ "${b:-0}" -ge 3000 ] && [ "${pb:-0}" -lt 3000 ]
ok $? "the fork child publishes its own counters (kmalloc-1k: child ${b:-none}, parent ${pb:-none})"
$top -l | grep -q "^$pid" && $top -l | grep -q "^$kid"
ok $? "kalloc-top -l lists both"
touch "$tmp/stop"
wait
[ ! -e "/dev/shm/kalloc.$pid" ] && [ ! -e "/dev/shm/kalloc.$kid" ]
ok $? "the files are removed when the processes exit"
$top -n 1 999999 >"$tmp/none" 2>&1
[ $? -ne 0 ] && grep -q "publish:1" "$tmp/none"
ok $? "a pid that does not publish: an error that says how to make it publish"
[ $fails -eq 0 ]
