#!/usr/bin/env bash
# Self-test of scripts/check-readme-commands.sh on a scratch git repository: it must fail when a
# Quick start script is committed as 100644 (the defect of issue #12), when a script the docs tell
# to run is not executable, and when .ci/run runs the test command differently from the README; and
# pass once they are right. Exit 77 (CTest: skipped) without git.
set -euo pipefail
command -v git >/dev/null || { echo "no git: skipped"; exit 77; }
check="$(cd "$(dirname "$0")/../.." && pwd)/scripts/check-readme-commands.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
git init -q .
git config user.email test@example.invalid
git config user.name test
mkdir -p scripts tools docs .ci
cat > README.md <<'MD'
# x

## Quick start

```sh
./scripts/demo.sh     # the demo
./scripts/test.sh     # the tests
```

`scripts/demo.sh --quick` is shorter.
MD
printf '# docs\n\n`tools/convert.py IN OUT` converts.\n' > docs/tools.md
for f in scripts/demo.sh scripts/test.sh tools/convert.py; do printf '#!/bin/sh\nexit 0\n' > "$f"; done
printf '#!/bin/sh\n./scripts/test.sh\n' > .ci/run
chmod 755 scripts/test.sh tools/convert.py .ci/run
chmod 644 scripts/demo.sh
git add -A && git commit -qm init

expect() {  # expect RC WHAT
  local rc=0
  "$check" "$tmp" >"$tmp.out" 2>&1 || rc=$?
  if [ "$rc" != "$1" ]; then
    echo "FAIL: $2: exit $rc, expected $1"; cat "$tmp.out"; rm -f "$tmp.out"; exit 1
  fi
  echo "ok: $2 (exit $rc)"; rm -f "$tmp.out"
}
expect 1 "scripts/demo.sh committed as 100644"
git update-index --chmod=+x scripts/demo.sh
expect 0 "all executable, .ci/run runs ./scripts/test.sh"
git update-index --chmod=-x tools/convert.py
expect 1 "a script docs/ tell to run is 100644"
git update-index --chmod=+x tools/convert.py
printf '#!/bin/sh\nbash scripts/test.sh\n' > .ci/run
expect 1 ".ci/run runs 'bash scripts/test.sh', not the README's './scripts/test.sh'"
printf '#!/bin/sh\n./scripts/test.sh\n' > .ci/run
git rm -q -f --cached scripts/demo.sh
expect 1 "a Quick start script that git does not track"
