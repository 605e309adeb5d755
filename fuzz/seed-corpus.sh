#!/bin/sh
# Fill fuzz/corpus/<target>/ (not committed) from the committed seeds in fuzz/seeds/<target>/
# and, for config_file, the golden example configurations in tests/golden/*.yaml.
# Run from anywhere; existing corpus files are kept.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for target in config_file config_values network_get asn kubeconfig hook_tool_output; do
    mkdir -p "$here/corpus/$target"
    if [ -d "$here/seeds/$target" ]; then
        cp "$here/seeds/$target"/* "$here/corpus/$target/"
    fi
done
for f in "$here"/../tests/golden/*.yaml; do
    cp "$f" "$here/corpus/config_file/golden-$(basename "$f")"
done
