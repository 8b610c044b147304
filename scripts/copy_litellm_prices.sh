#!/usr/bin/env bash
# Copy a LiteLLM price file into the project as a dated, versioned default source for
# `routesim prices import-litellm`: data/price-sheets/litellm-VERSION/ with the upstream licence.
# Usage: bash scripts/copy_litellm_prices.sh [VERSION] [SOURCE_DIR]
# SOURCE_DIR holds model_prices_and_context_window_backup.json and LICENSE.upstream.txt as unpacked from the
# PyPI wheel litellm==VERSION (litellm/model_prices_and_context_window_backup.json; MIT outside enterprise/);
# the default is ../shared/public-data/price-sheets/litellm-VERSION beside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-1.110.2}"
source_dir="${2:-../shared/public-data/price-sheets/litellm-$version}"
target="data/price-sheets/litellm-$version"
mkdir -p "$target"
cp "$source_dir/model_prices_and_context_window_backup.json" "$target/model_prices_and_context_window.json"
cp "$source_dir/LICENSE.upstream.txt" "$target/LICENSE.upstream.txt"
chmod u+w "$target"/*
sha=$(sha256sum "$target/model_prices_and_context_window.json" | cut -d' ' -f1)
cat > "$target/README.md" <<README
# LiteLLM price list $version

\`model_prices_and_context_window.json\`: \`litellm/model_prices_and_context_window_backup.json\` from the PyPI
wheel litellm $version, byte for byte (sha256 $sha), the same content as BerriAI/litellm's
model_prices_and_context_window.json at that release. USD per token per model key. Licence: MIT for
everything outside LiteLLM's \`enterprise/\` directory (\`LICENSE.upstream.txt\`); this file is outside it.

Prices are list prices at the release; routesim records the version with any sheet imported from it:
\`routesim prices import-litellm $target/model_prices_and_context_window.json --as-of DATE --models ...\`.
Copied by \`scripts/copy_litellm_prices.sh $version\`.
README
echo "wrote $target"
