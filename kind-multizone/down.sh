#!/usr/bin/env bash
# Removes the kind cluster made by up.sh (and with it everything installed into it).
set -euo pipefail
kind delete cluster --name mzlb
