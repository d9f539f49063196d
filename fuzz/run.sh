#!/usr/bin/env bash
# `make fuzz`: each target for FUZZ_SECS seconds (default 180), seeded from the project's
# fixtures and ../shared/corpus; prints runs, runs per second and what was found. A crash
# leaves its input in fuzz/artifacts/TARGET/: copy it to fuzz/regressions/TARGET/ and
# `cargo test --test fuzz_regressions` replays it in `make test` from then on.
set -uo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SECS:-180}"
targets="${FUZZ_TARGETS:-email p7m pdf_text content_stream page_images pipeline_toml rules_toml search_query web_forms}"
corpus_dir=../../shared/corpus
seed() { # target, then file patterns
  local t=$1; shift
  mkdir -p "corpus/$t"
  for pattern in "$@"; do
    for f in $pattern; do [ -f "$f" ] && cp -n "$f" "corpus/$t/" 2>/dev/null; done
  done
  if [ -d "regressions/$t" ]; then cp -n regressions/"$t"/* "corpus/$t/" 2>/dev/null; fi
  true
}
seed email ../fixtures/mail/'*' "$corpus_dir"/'*.eml' "$corpus_dir"/mail-it/'*.eml'
seed p7m
# Signed files as citizens attach them: taken out of the corpus's messages.
python3 - "$corpus_dir"/mail-it corpus/p7m <<'PY' || true
import email, os, sys
src, dst = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)) if os.path.isdir(src) else []:
    if not name.endswith('.eml'):
        continue
    with open(os.path.join(src, name), 'rb') as fh:
        msg = email.message_from_binary_file(fh)
    for i, part in enumerate(msg.walk()):
        fn = part.get_filename() or ''
        if fn.lower().endswith('.p7m'):
            data = part.get_payload(decode=True) or b''
            with open(os.path.join(dst, f'{name}-{i}.p7m'), 'wb') as out:
                out.write(data)
PY
seed pdf_text ../fixtures/scanner/'*.pdf' ../fixtures/fax/'*.pdf' "$corpus_dir"/'*.pdf'
seed content_stream ../fixtures/scanner/'*.pdf'
seed page_images ../fixtures/fax/'*' ../fixtures/scanner/'*.jpg' "$corpus_dir"/'*.tif*' "$corpus_dir"/'*.jpg' "$corpus_dir"/'*.png'
seed pipeline_toml ../pipelines/'*.toml'
seed rules_toml ../pipelines/'*.toml' ../pipelines/'*/*.toml'
seed search_query
printf 'allaccio gas' > corpus/search_query/words
printf '"contributo autonoma" -rifiuto alloggi*' > corpus/search_query/phrase
seed web_forms
printf 'q=allaccio&topic=gas&status=new&from=2010-01-01&to=2010-12-31&page=2' > corpus/web_forms/search
printf 'csrf=abc&action=reclassify&topic=gas&note=ok' > corpus/web_forms/action
export RUSTC_BOOTSTRAP=1
status=0
for t in $targets; do
  log="$(mktemp)"
  cargo fuzz run -s none --release "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  persec=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  found=$(ls "artifacts/$t" 2>/dev/null | wc -l)
  echo "$t: ${secs} s, ${runs:-?} runs, ${persec:-?}/s, exit $rc, artifacts $found"
  if [ "$rc" != 0 ]; then status=1; grep -E 'ERROR|panicked|SUMMARY|artifact' "$log" | head -5; fi
  rm -f "$log"
done
exit $status
