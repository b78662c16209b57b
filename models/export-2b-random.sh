#!/bin/sh
# The random-weight bundle with GLM-Edge-V-2B's shapes that `edged bench caption` runs on.
set -eu
cd "$(dirname "$0")/.."
edged models export --random-init --shape 2b --out .cache/glm-edge-v-2b-random \
    --snapshot-out .cache/glm-2b-snapshot --golden-images 1 --golden-tokens 4
edged models quantize .cache/glm-edge-v-2b-random
