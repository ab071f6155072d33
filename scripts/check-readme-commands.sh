#!/usr/bin/env bash
# Checks that the commands the README and docs/ tell a user to run work as written on a fresh clone:
#  - every command of the README's "Quick start" block that names a file (./scripts/demo.sh ...)
#    names a file tracked by git with mode 100755 and a #! line, so `./path` does not stop with
#    "Permission denied" (a clone takes the mode from the index, not from this working tree);
#  - every *.sh / *.py file of the repository that README.md or docs/*.md mention in code (`...`
#    or a code block) as something to run is executable in the index too;
#  - .ci/run contains the README's test command line exactly as the README writes it, so CI runs
#    what a user runs.
# Usage: scripts/check-readme-commands.sh [REPO_ROOT]   (default: this script's repository)
# Exit status: 0 all good, 1 a problem (each one printed), 77 not a git checkout (CTest: skipped).
set -euo pipefail
root=${1:-"$(dirname "$0")/.."}
cd "$root"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "check-readme-commands: $PWD is not a git checkout; skipped" >&2
  exit 77
fi

fail=0
problem() { echo "check-readme-commands: $*" >&2; fail=1; }

# mode_of PATH: the mode git records for PATH ("" when untracked).
mode_of() { git ls-files -s -- "$1" | awk 'NR == 1 { print $1 }'; }

# check_executable PATH WHERE: PATH must be tracked, 100755 in the index, and start with #!.
check_executable() {
  local path=$1 where=$2 mode
  mode=$(mode_of "$path")
  if [ -z "$mode" ]; then
    problem "$where runs '$path', which git does not track"
  elif [ "$mode" != 100755 ]; then
    problem "$where runs '$path', which git records as $mode, not 100755: a fresh clone says" \
      "'Permission denied' (fix: git update-index --chmod=+x $path)"
  elif [ "$(head -c 2 "$path")" != '#!' ]; then
    problem "$where runs '$path', which has no #! line"
  fi
}

# ---- the README's Quick start: the first ``` block after the "## Quick start" heading
[ -f README.md ] || { problem "no README.md in $PWD"; exit 1; }
quick=$(awk '
  /^## / { in_section = ($0 ~ /^## Quick start/) }
  in_section && /^```/ { if (in_block) exit; in_block = 1; next }
  in_section && in_block { print }
' README.md)
if [ -z "$quick" ]; then
  problem "README.md has no code block under '## Quick start'"
fi
test_line=""
while IFS= read -r line; do
  cmd=${line%%#*}                      # drop the comment
  read -r first _ <<<"$cmd" || true    # the program the line runs
  [ -n "${first:-}" ] || continue
  case $first in
    */*)
      check_executable "${first#./}" "README Quick start line '$line'"
      case $first in ./*) ;; *) problem "README Quick start line '$line' should run it as ./${first#./}" ;; esac
      ;;
  esac
  case $cmd in *scripts/test.sh*) test_line=$(sed 's/[[:space:]]*$//' <<<"$cmd") ;; esac
done <<<"$quick"

# ---- CI runs the README's test command as written
if [ -z "$test_line" ]; then
  problem "README Quick start has no scripts/test.sh command"
elif [ ! -f .ci/run ]; then
  problem "no .ci/run"
elif ! sed 's/[[:space:]]*$//' .ci/run | grep -qxF -- "$test_line"; then
  problem ".ci/run does not run the README's test command exactly as written: '$test_line'"
fi

# ---- scripts mentioned anywhere in README.md and docs/*.md, in inline code or code blocks:
# the first word of a code span or of a code-block line that is a tracked *.sh or *.py path.
docs=(README.md)
for f in docs/*.md; do [ -f "$f" ] && docs+=("$f"); done
while IFS=: read -r file path; do
  [ -f "$path" ] || continue           # a path of another machine, an example name
  check_executable "$path" "$file"
done < <(
  for f in "${docs[@]}"; do
    awk -v file="$f" '
      /^```/ { in_block = !in_block; next }
      {
        if (in_block || /^    /) {   # a fenced or an indented code line: its first word
          line = $0; sub(/^[ \t]+/, "", line); split(line, w, /[ \t]+/)
          if (w[1] ~ /^(\.\/)?[A-Za-z0-9_.-]+\/[A-Za-z0-9_.\/-]+\.(sh|py)$/) { sub(/^\.\//, "", w[1]); print file ":" w[1] }
          next
        }
        rest = $0   # inline code spans: the first word of each
        while (match(rest, /`[^`]+`/)) {
          span = substr(rest, RSTART + 1, RLENGTH - 2); rest = substr(rest, RSTART + RLENGTH)
          split(span, w, /[ \t]+/)
          if (w[1] ~ /^(\.\/)?[A-Za-z0-9_.-]+\/[A-Za-z0-9_.\/-]+\.(sh|py)$/) { sub(/^\.\//, "", w[1]); print file ":" w[1] }
        }
      }' "$f"
  done | sort -u
)

if [ "$fail" != 0 ]; then
  echo "check-readme-commands: FAILED" >&2
  exit 1
fi
echo "check-readme-commands: the README's and docs' commands are executable in git, and .ci/run runs '$test_line'"
