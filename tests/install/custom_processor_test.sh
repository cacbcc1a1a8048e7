#!/usr/bin/env bash
# Installs this build into a fresh prefix and uses it as a stranger would:
# only the installed headers are public and each compiles on its own;
# examples/custom_processor configures and builds against the prefix (not the
# source tree) and sums the squares of a JSONL file's values exactly; the
# adapter components are found when built and a missing one fails.
# Usage: custom_processor_test.sh BUILD_DIR SOURCE_DIR CXX "ADAPTERS"
set -euo pipefail
build_dir="$1" source_dir="$2" cxx="$3" adapters="$4"
work="$(mktemp -d "${TMPDIR:-/tmp}/fanflow-install-test-XXXXXX")"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
fail() { echo "custom_processor_test: $*" >&2; exit 1; }

cmake --install "$build_dir" --prefix "$prefix" >/dev/null

headers="$(cd "$prefix/include" && find . -type f | sort | tr '\n' ' ')"
expected="./fanflow/batch_runner.h ./fanflow/bus.h ./fanflow/event.h ./fanflow/processor.h ./fanflow/status.h "
[ "$headers" = "$expected" ] || fail "installed headers are '$headers', expected '$expected'"
for h in "$prefix"/include/fanflow/*.h; do
  echo "#include <fanflow/$(basename "$h")>" | "$cxx" -std=c++20 -fsyntax-only -x c++ -I"$prefix/include" - ||
    fail "<fanflow/$(basename "$h")> does not compile on its own"
done

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$source_dir/examples/custom_processor" -B "$work/example" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$work/configure.log" || { cat "$work/configure.log"; fail "configure failed"; }
grep -qx "fanflow_DIR:PATH=$prefix/lib/cmake/fanflow" "$work/example/CMakeCache.txt" ||
  fail "the example found another fanflow: $(grep fanflow_DIR "$work/example/CMakeCache.txt")"
cmake --build "$work/example" >"$work/build.log" || { cat "$work/build.log"; fail "build failed"; }
! grep -q "$source_dir/src\|$source_dir/adapters" "$work/example/compile_commands.json" ||
  fail "the example was compiled against the source tree"

# 2,345 items (the last chunk partial), negative and large values; N computed here.
python3 - "$work/items.jsonl" >"$work/expected" <<'PY'
import json, sys
values = [(i * 7919) % 200003 - 100000 for i in range(2345)]
with open(sys.argv[1], "w") as f:
    for i, v in enumerate(values):
        f.write(json.dumps({"id": i, "value": v}) + "\n")
print(sum(v * v for v in values))
PY
"$work/example/custom_processor" "jsonl:$work/items.jsonl" >"$work/stdout" || fail "custom_processor exited $?"
python3 - "$work/stdout" "$(cat "$work/expected")" <<'PY' || fail "wrong batch_complete"
import json, sys
last = open(sys.argv[1]).read().splitlines()[-1]
event = json.loads(last)
want = {"sum_of_squares": int(sys.argv[2])}
assert event["type"] == "fanflow.batch_complete.v1", event["type"]
assert event["data"]["status"] == "succeeded", event["data"]
assert event["data"]["items"] == 2345 and event["data"]["chunks"] == 24, event["data"]
assert event["data"]["result"] == want, (event["data"]["result"], want)
print("custom_processor: sum_of_squares", want["sum_of_squares"])
PY

# find_package(... COMPONENTS): the adapters built are found, one not built fails.
mkdir -p "$work/components"
cat >"$work/components/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(components LANGUAGES CXX)
find_package(fanflow CONFIG REQUIRED COMPONENTS ${WANT})
CM
if [ -n "$adapters" ]; then
  cmake -S "$work/components" -B "$work/components/ok" -DCMAKE_PREFIX_PATH="$prefix" "-DWANT=${adapters// /;}" \
    >"$work/components.log" 2>&1 || { cat "$work/components.log"; fail "components '$adapters' not found"; }
fi
if cmake -S "$work/components" -B "$work/components/bad" -DCMAKE_PREFIX_PATH="$prefix" -DWANT=nosuch \
  >"$work/components.log" 2>&1; then
  fail "a component that was not built was found"
fi
grep -q "built without nosuch" "$work/components.log" || { cat "$work/components.log"; fail "no word of the missing component"; }
echo "custom_processor_test: ok"
