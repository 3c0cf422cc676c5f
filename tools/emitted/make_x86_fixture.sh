#!/usr/bin/env bash
# Regenerates tests/Hone.Tests/Fixtures/Emitted/x86_encodings.txt: for every line of x86_instructions.txt
# (GNU as Intel syntax), the bytes GNU binutils assembles it to. The assembler test compares our encoder with it.
# Needs `as` and `objcopy` (GNU binutils). Lines may hold ';'-separated statements (for jump labels); the bytes of
# the whole line are recorded.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../tests/Hone.Tests/Fixtures/Emitted/x86_encodings.txt"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
  echo "# instruction<TAB>bytes (hex), made by tools/emitted/make_x86_fixture.sh with $(as --version | head -1)"
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    printf '.intel_syntax noprefix\n.text\n%s\n' "$line" > "$work/one.s"
    as --64 -o "$work/one.o" "$work/one.s"
    objcopy -O binary -j .text "$work/one.o" "$work/one.bin"
    printf '%s\t%s\n' "$line" "$(xxd -p "$work/one.bin" | tr -d '\n')"
  done < "$here/x86_instructions.txt"
} > "$out"
echo "wrote $out"
