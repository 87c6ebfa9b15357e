#!/bin/sh
# ctest driver (tests/tokenizer.cmake): NODE SCRIPT_DIR CHECKER OUT_DIR
# Runs reference.mjs into OUT_DIR, then the C++ checker on it. Fails (never skips) when node or
# node_modules is missing, naming the install command.
set -e
node="$1"; here="$2"; checker="$3"; out="$4"
install="(cd $here && npm ci --ignore-scripts)"
if [ -z "$node" ] || [ ! -x "$node" ]; then
  echo "tokenizer_reference: node not found (apt-get install nodejs npm), then: $install" >&2
  exit 1
fi
if [ ! -d "$here/node_modules/@huggingface/tokenizers" ]; then
  echo "tokenizer_reference: $here/node_modules is missing; run: $install" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
"$node" "$here/reference.mjs" "$out"
"$checker" "$out"
