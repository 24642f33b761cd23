#!/bin/sh
# t/python-regrtest.sh: Python's own regression tests for modules that
# stress memory, run under kalloc (PYTHONMALLOC=malloc, LD_PRELOAD). Each
# module runs first without kalloc: one that fails there too is reported
# and not counted against kalloc. Ends with "python-regrtest: N passed,
# M failed" (modules) and exits non-zero if a module fails only under kalloc.
lib=${KALLOC_LIB:-$(pwd)/lib/.libs/libkalloc.so}
modules=${PY_MODULES:-"test_dict test_list test_set test_bytes test_unicode test_str test_json test_re test_threading test_collections"}

# An interpreter with the `test` package: Debian's needs libpython3.11-testsuite.
py=""
for cand in python3 /usr/bin/python3.11 /usr/bin/python3; do
	if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import test.regrtest, test.support' 2>/dev/null; then
		py=$(command -v "$cand")
		# Prefer the real binary over a shim script, so LD_PRELOAD reaches it.
		real=$("$py" -c 'import sys; print(sys.executable)')
		[ -x "$real" ] && py=$real
		break
	fi
done
if [ -z "$py" ]; then
	echo "python-regrtest: no interpreter with the test package (install libpython3.11-testsuite)"
	echo "python-regrtest: 0 passed, 0 failed"
	exit 0
fi
if [ ! -f "$lib" ]; then
	echo "python-regrtest: no $lib"
	echo "python-regrtest: 0 passed, 1 failed"
	exit 1
fi
echo "python-regrtest: interpreter $py ($("$py" -V 2>&1))"
passed=0 failed=0 skipped=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in $modules; do
	if ! "$py" -c "import test.$m" 2>/dev/null; then
		echo "  $m: not in this Python, skipped"
		continue
	fi
	(cd "$tmp" && PYTHONMALLOC=malloc timeout 600 "$py" -m test --timeout 300 -q "$m") >"$tmp/plain.log" 2>&1
	plain=$?
	(cd "$tmp" && PYTHONMALLOC=malloc LD_PRELOAD="$lib" timeout 600 "$py" -m test --timeout 300 -q "$m") >"$tmp/ka.log" 2>&1
	ka=$?
	if [ "$ka" -eq 0 ]; then
		echo "  $m: pass under kalloc"
		passed=$((passed + 1))
	elif [ "$plain" -ne 0 ]; then
		echo "  $m: fails without kalloc too (exit $plain), not counted"
		skipped=$((skipped + 1))
	else
		echo "  $m: FAILS under kalloc only (exit $ka)"
		tail -30 "$tmp/ka.log" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
done
echo "python-regrtest: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
