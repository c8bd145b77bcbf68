#!/usr/bin/env bash
# Build the benchmark peers (llama-bench, llama-server, llama-batched-bench) from exactly the
# llama.cpp source that the installed llama-cpp-python vendors, so Haven and its peers run
# the same kernels. Installs into .peers/bin; idempotent (skips when built for that version).
#
# Flags follow llama-cpp-python's defaults on Linux: its CMakeLists.txt only forces options for
# Emscripten/Apple, so llama.cpp's own defaults apply (Release, GGML_NATIVE=ON, OpenMP on,
# curl off). We link statically so the peers do not depend on an rpath; the kernels are the same.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')}"
PEERS="$ROOT/.peers"
STAMP="$PEERS/built-$VERSION"
JOBS="${JOBS:-2}"

if [[ -f "$STAMP" && -x "$PEERS/bin/llama-bench" && -x "$PEERS/bin/llama-server" && -x "$PEERS/bin/llama-batched-bench" ]]; then
    echo "peers already built for llama-cpp-python $VERSION in $PEERS/bin"
    exit 0
fi

mkdir -p "$PEERS/src" "$PEERS/bin"
cd "$PEERS/src"
SDIST="llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
    "$PY" -m pip download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d .
fi
if [[ ! -d "llama_cpp_python-$VERSION/vendor/llama.cpp" ]]; then
    tar xzf "$SDIST" "llama_cpp_python-$VERSION/vendor/llama.cpp"
fi
SRC="$PEERS/src/llama_cpp_python-$VERSION/vendor/llama.cpp"

cmake -S "$SRC" -B "$PEERS/build-$VERSION" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=ON \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON
cmake --build "$PEERS/build-$VERSION" -j "$JOBS" --target llama-bench llama-server llama-batched-bench
for tool in llama-bench llama-server llama-batched-bench; do
    install -m 0755 "$PEERS/build-$VERSION/bin/$tool" "$PEERS/bin/$tool"
done
# Record which llama.cpp the peers were built from (the harness prints it).
grep -m1 -o 'LLAMA_BUILD_NUMBER[^)]*' "$SRC/CMakeLists.txt" > "$PEERS/llama-cpp-version.txt" 2>/dev/null || true
echo "$VERSION" > "$STAMP"
echo "peers built for llama-cpp-python $VERSION in $PEERS/bin"
