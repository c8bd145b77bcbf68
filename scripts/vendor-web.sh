#!/usr/bin/env bash
# Fetches the web UI's third-party front-end libraries from the npm registry at pinned versions and
# writes them, with their licences, into haven/web/vendor/ (axe-core, used only by the browser tests,
# into tests/browser/vendor/). The files there are never edited by hand: change a pin here and re-run.
#
# Each tarball is checked against the sha512 integrity pinned below before anything is extracted, so a
# re-run reproduces the committed files byte for byte (vendor/MANIFEST.txt lists each file's sha256).
# Needs npm (only to fetch; nothing needs Node to run or test the UI).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/haven/web/vendor"
TEST_VENDOR="$ROOT/tests/browser/vendor"

# package@version  sha512 integrity (from `npm view PKG@VER dist.integrity`)
PINS=(
  "marked@18.2.1 sha512-ii4bxCTCqqwpT86XZWgJNs+ZnAIZksmLGYMViWA7PDIXYIeNo1x6cDdX3JOip9NM/cI6p8z57FxliACboTruMA=="
  "dompurify@3.5.0 sha512-LYC0ZkE8P1V42JsRYTwMdme/2ET8SpOc5AA2eOFjP/IadvRd2fwiT4TVz5vkfy0XUx12aS2UaRkTnfVPNOv9vw=="
  "@highlightjs/cdn-assets@11.12.0 sha512-KvOKXODaiFmId9xaq3xc5xCL66wVLUuOngDbO9B/kewbFTqdGbn2nJxNhN3H5R1cgDTVj6R8vH0zgiNDEGjpDw=="
  "katex@0.19.1 sha512-jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QEi+of0/YeOy15lDgRhKvr5614uRrEfA=="
  "axe-core@4.14.1 sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
# The highlight.js grammars the UI registers (haven/web/js/markdown.js imports exactly these).
HLJS_LANGUAGES=(bash c cpp css diff go java javascript json markdown python rust shell sql typescript xml yaml)

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fetch() {  # fetch PKG@VER INTEGRITY → extracted into $WORK/<name>/package
  local spec="$1" integrity="$2" name dir tgz actual
  name="${spec%@*}"; name="${name#@}"; name="${name//\//-}"
  dir="$WORK/$name"; mkdir -p "$dir"
  tgz="$(cd "$dir" && npm pack --silent "$spec")"
  actual="sha512-$(openssl dgst -sha512 -binary "$dir/$tgz" | base64 -w0)"
  if [[ "$actual" != "$integrity" ]]; then
    echo "vendor-web: $spec integrity mismatch: expected $integrity, got $actual" >&2
    exit 1
  fi
  tar xzf "$dir/$tgz" -C "$dir"
  echo "$dir/package"
}

rm -rf "$VENDOR" "$TEST_VENDOR"
mkdir -p "$VENDOR" "$TEST_VENDOR"
declare -A SRC
for pin in "${PINS[@]}"; do
  spec="${pin%% *}"; integrity="${pin##* }"
  SRC["$spec"]="$(fetch "$spec" "$integrity")"
  echo "$spec $integrity" >> "$WORK/pins.txt"
done

copy() { mkdir -p "$(dirname "$2")"; cp "$1" "$2"; }

p="${SRC[marked@18.2.1]}"
copy "$p/lib/marked.esm.js" "$VENDOR/marked/marked.esm.js"
copy "$p/LICENSE" "$VENDOR/marked/LICENSE"

p="${SRC[dompurify@3.5.0]}"
copy "$p/dist/purify.es.mjs" "$VENDOR/dompurify/purify.es.mjs"
copy "$p/LICENSE" "$VENDOR/dompurify/LICENSE"

p="${SRC[@highlightjs/cdn-assets@11.12.0]}"
copy "$p/es/core.min.js" "$VENDOR/highlight/core.min.js"
for lang in "${HLJS_LANGUAGES[@]}"; do
  copy "$p/es/languages/$lang.min.js" "$VENDOR/highlight/languages/$lang.min.js"
done
copy "$p/LICENSE" "$VENDOR/highlight/LICENSE"

p="${SRC[katex@0.19.1]}"
copy "$p/dist/katex.min.js" "$VENDOR/katex/katex.min.js"
copy "$p/dist/katex.min.css" "$VENDOR/katex/katex.min.css"
# Every browser the UI supports reads woff2, and katex.min.css lists woff2 first in each src list.
for font in "$p"/dist/fonts/*.woff2; do copy "$font" "$VENDOR/katex/fonts/$(basename "$font")"; done
copy "$p/LICENSE" "$VENDOR/katex/LICENSE"

p="${SRC[axe-core@4.14.1]}"
copy "$p/axe.min.js" "$TEST_VENDOR/axe-core/axe.min.js"
copy "$p/LICENSE" "$TEST_VENDOR/axe-core/LICENSE"

for target in "$VENDOR" "$TEST_VENDOR"; do
  {
    echo "# Written by scripts/vendor-web.sh from the npm registry; do not edit. package@version integrity:"
    cat "$WORK/pins.txt"
    echo "# sha256 of each file:"
    (cd "$target" && find . -type f ! -name MANIFEST.txt | LC_ALL=C sort | xargs sha256sum)
  } > "$target/MANIFEST.txt"
done
echo "vendor-web: wrote $(find "$VENDOR" -type f | wc -l) files to haven/web/vendor and axe-core to tests/browser/vendor"
