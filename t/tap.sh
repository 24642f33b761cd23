# t/tap.sh: sourced by the shell tests that count their own checks (the
# shell side of t/tap.h): `ok STATUS TEXT` passes when STATUS is 0, `skip
# TEXT` counts a skipped check, and `$fails` is what the test exits with.
n=0
fails=0
ok() { # cond-status description
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; }
