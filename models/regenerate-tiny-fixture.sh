#!/bin/sh
# Rebuild the committed tiny GLM-Edge-V fixture (needs: pip install -e '.[export]').
set -eu
cd "$(dirname "$0")/.."
rm -rf tests/fixtures/glm-edge-v-tiny tests/fixtures/glm-edge-v-tiny-snapshot
edged models export --random-init --shape tiny --seed 0 --name glm-edge-v-tiny --reference \
    --out tests/fixtures/glm-edge-v-tiny --snapshot-out tests/fixtures/glm-edge-v-tiny-snapshot
edged models quantize tests/fixtures/glm-edge-v-tiny
