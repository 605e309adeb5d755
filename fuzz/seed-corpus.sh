#!/bin/sh
# Fill fuzz/corpus/<target>/ (not committed) from the committed seeds in fuzz/seeds/<target>/
# and, for config_file, the golden example configurations in tests/golden/*.yaml.
# Run from anywhere; existing corpus files are kept.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for target in config_file config_values network_get asn kubeconfig hook_tool_output topology; do
    mkdir -p "$here/corpus/$target"
    if [ -d "$here/seeds/$target" ]; then
        cp "$here/seeds/$target"/* "$here/corpus/$target/"
    fi
done
for f in "$here"/../tests/golden/*.yaml; do
    cp "$f" "$here/corpus/config_file/golden-$(basename "$f")"
done
# topology: OPTIONS\0UNITS from the topology goldens (each example's units with its option
# file and with each broken variant's).
golden="$here/../tests/golden"
for units in "$golden"/topology/*.units.yaml; do
    example=$(basename "$units" .units.yaml)
    for options in "$golden/$example.yaml" "$golden/topology/$example.yaml" "$golden"/topology/"$example"-*.yaml; do
        case "$options" in *.expected.yaml) continue ;; esac
        [ -f "$options" ] || continue
        out="$here/corpus/topology/$(basename "$options" .yaml)"
        { cat "$options"; printf '\000'; cat "$units"; } > "$out"
    done
done

