# Named checks for the bash system tests (tests/*.sh): `pass NAME`,
# `fail NAME [DETAIL...]`, `fatal NAME [DETAIL...]` (a failure the rest
# cannot go on after) and `summary`, whose closing line
# `<suite>: N passed, M failed` scripts/test.sh counts.
# Source it after setting `suite`.
passed=0
failed=0
summary() { echo "$suite: $passed passed, $failed failed"; }
pass() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() {
	failed=$((failed + 1))
	echo "FAIL - $1"
	shift
	local line
	for line in "$@"; do printf '       %s\n' "$line"; done
}
fatal() { fail "$@"; summary; exit 1; }
