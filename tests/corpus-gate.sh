#!/bin/bash
# The corpus accuracy gate: runs examples/corpus_eval.rs on a labelled corpus and fails when any
# figure falls below its floor in tests/corpus-floors.tsv (the figures the README states).
#
# Usage: bash tests/corpus-gate.sh [CORPUS_DIR]      (default: ../shared/corpus beside the repo)
#
# It fails (exit 1) when:
#   - the corpus is missing (no CORPUS_DIR/manifest.tsv), unless BACKSTOP_NO_CORPUS=1 is set:
#     the one, explicit opt-out, for a checkout without the shared corpus;
#   - corpus_eval fails, or a line of the floors file is not printed, or a printed line has no floor;
#   - a gated figure is below its floor (or an excluded/unreadable count above its ceiling);
#   - a total does not match manifest.tsv (no message may drop out of a figure unseen).
# The last line it prints is the one-line summary.
#
# Environment: CORPUS_EVAL=BINARY gates that corpus_eval build instead of building one with
# `cargo build --release --locked --example corpus_eval`; CORPUS_SET=dev|holdout|all (default dev).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 0 ]; then
    corpus=$(realpath -m -- "$1")
else
    corpus=$(realpath -m -- "$root/../shared/corpus")
fi
set_name=${CORPUS_SET:-dev}
floors=$root/tests/corpus-floors.tsv
eval_bin=${CORPUS_EVAL:+$(realpath -m -- "$CORPUS_EVAL")}
cd "$root"

if [ ! -f "$corpus/manifest.tsv" ]; then
    if [ "${BACKSTOP_NO_CORPUS:-}" = 1 ]; then
        echo "corpus gate: SKIPPED, no corpus at $corpus and BACKSTOP_NO_CORPUS=1"
        exit 0
    fi
    echo "corpus gate: FAILED, no corpus at $corpus (no manifest.tsv); BACKSTOP_NO_CORPUS=1 skips the gate on purpose"
    exit 1
fi

if [ -z "$eval_bin" ]; then
    if ! cargo build --release --locked --example corpus_eval >&2; then
        echo "corpus gate: FAILED, corpus_eval does not build"
        exit 1
    fi
    eval_bin=$(realpath -m -- "${CARGO_TARGET_DIR:-target}")/release/examples/corpus_eval
fi

mkdir -p target
out=target/corpus_eval.txt
status=0
"$eval_bin" "$corpus" --set "$set_name" >"$out" || status=$?
cat "$out"
echo
if [ "$status" -ne 0 ]; then
    echo "corpus gate: FAILED, corpus_eval exited with status $status"
    exit 1
fi

# Three inputs: the floors, the manifest, corpus_eval's output.
awk -v set_name="$set_name" -v corpus="$corpus" '
BEGIN { FS = "\t" }
FNR == 1 { file++ }

# The floors: label -> rule, value.
file == 1 {
    if ($0 ~ /^#/ || $0 == "") next
    if (NF < 3 || ($2 != "min" && $2 != "max" && $2 != "report")) {
        problem("floors file line " FNR " is not LABEL<TAB>min|max|report<TAB>VALUE")
        next
    }
    rule[$1] = $2; value[$1] = $3; nfloors++; floor_label[nfloors] = $1
    next
}

# The manifest: the totals every figure must have.
file == 2 && FNR == 1 {
    for (i = 1; i <= NF; i++) col[$i] = i
    split("set kind orig_headers_found orig_from_domain orig_received", need, " ")
    for (i in need) if (!(need[i] in col)) problem("manifest.tsv lacks the column " need[i])
    next
}
file == 2 {
    if ($(col["set"]) != set_name && set_name != "all") next
    messages++
    kind = $(col["kind"])
    kinds[kind]++
    if (kind != "dsn" && kind != "inline-bounce") next
    bounces++
    if ($(col["orig_headers_found"]) != "yes" || $(col["orig_from_domain"]) == "") next
    scatter++
    rcv = $(col["orig_received"]); gsub(/[ |]/, "", rcv)
    if (rcv != "") scatter_rcv++
    next
}

# corpus_eval: its header line, then LABEL  GOOD / TOTAL  RATE% lines up to an empty line.
file == 3 && /^backstop corpus evaluation: / {
    header = $0
    printed_messages = $0
    sub(/ messages\)$/, "", printed_messages); sub(/.* /, "", printed_messages)
    in_figures = 1
    next
}
file == 3 && in_figures && $0 == "" { in_figures = 0; next }
file == 3 && in_figures {
    label = $0
    if (!sub(/ +[0-9]+ \/ [0-9]+ +[0-9.]+%$/, "", label)) {
        problem("a figure line corpus_eval printed is not LABEL GOOD / TOTAL RATE%: " $0)
        next
    }
    n = split($0, w, / +/)
    good[label] = w[n - 3] + 0; total[label] = w[n - 1] + 0
    nprinted++; printed_label[nprinted] = label
    next
}

function problem(msg) { problems++; print "  FAIL " msg }

# value "NN.NN%" or "N" against good / total, in whole numbers (hundredths of a percent).
function meets(label, r, v,    p, g, t) {
    g = good[label]; t = total[label]
    if (v ~ /%$/) {
        p = v; sub(/%$/, "", p)
        if (p !~ /^[0-9]+\.[0-9][0-9]$/) { problem("floor of \"" label "\" is not NN.NN%: " v); return 0 }
        sub(/\./, "", p); p = p + 0
        return r == "min" ? g * 10000 >= p * t : g * 10000 <= p * t
    }
    if (v !~ /^[0-9]+$/) { problem("floor of \"" label "\" is neither NN.NN% nor a count: " v); return 0 }
    return r == "min" ? g >= v + 0 : g <= v + 0
}

function same_total(label, want, what) {
    if ((label in total) && total[label] != want)
        problem("\"" label "\": total " total[label] ", but manifest.tsv has " want " " what)
}

END {
    if (header == "") problem("corpus_eval printed no \"backstop corpus evaluation:\" line")
    if (messages == 0) problem("manifest.tsv has no " set_name " messages")
    # Every floor has its line, every line its floor.
    for (i = 1; i <= nfloors; i++) {
        l = floor_label[i]
        if (!(l in total)) { problem("not printed: \"" l "\""); continue }
        if (rule[l] == "report") continue
        gated++
        if (rule[l] == "min" && total[l] == 0) problem("\"" l "\": nothing measured (0 / 0)")
        else if (!meets(l, rule[l], value[l]))
            problem(sprintf("\"%s\": %d / %d, %s %s", l, good[l], total[l],
                rule[l] == "min" ? "below the floor" : "above the ceiling", value[l]))
    }
    for (i = 1; i <= nprinted; i++)
        if (!(printed_label[i] in rule)) problem("no floor for the printed line \"" printed_label[i] "\"")

    # Totals against the manifest.
    if (printed_messages + 0 != messages)
        problem("corpus_eval counted " printed_messages " messages, manifest.tsv has " messages)
    same_total("unreadable files", messages, "messages")
    same_total("ham: clean", kinds["ham"] + 0, "ham")
    for (k in kinds) {
        if (k == "ham") continue
        l = k ": recognised as bounce or auto-reply"
        if (!(l in total) && !(l in rule)) problem("not printed: \"" l "\" (" kinds[k] " in manifest.tsv)")
        same_total(l, kinds[k], k)
    }
    for (l in total)
        if (l ~ /: recognised as bounce or auto-reply$/) {
            k = l; sub(/: recognised as bounce or auto-reply$/, "", k)
            if (!(k in kinds)) same_total(l, 0, k)
        }
    same_total("dsn+inline: recognised", bounces + 0, "dsn and inline-bounce")
    legit_out = "legit scenario: excluded, no hand-off to a bouncer elsewhere"
    same_total(legit_out, bounces + 0, "dsn and inline-bounce")
    legit_in = bounces - good[legit_out]
    same_total("legit scenario: not called backscatter", legit_in, "dsn and inline-bounce with a hand-off")
    same_total("legit scenario: legit-bounce (reaches the inbox)", legit_in, "dsn and inline-bounce with a hand-off")
    same_total("backscatter scenario (original headers came back)", scatter + 0,
        "dsn and inline-bounce with original headers and a From domain")
    bs_rcv = "backscatter scenario (original with Received came back)"
    same_total(bs_rcv, scatter_rcv + 0, "of those with Received headers")
    unseen = "forged-relay variant: excluded, hop outside the judged original"
    no_place = "forged-relay variant: excluded, no place to insert"
    never = "forged-relay variant: never legit"
    still = "forged-relay variant of those backscatter: still backscatter"
    same_total(unseen, scatter_rcv + 0, "with Received headers")
    same_total(no_place, scatter_rcv + 0, "with Received headers")
    if ((never in total) && total[never] + good[unseen] + good[no_place] != scatter_rcv)
        problem("\"" never "\": " total[never] " tried + " good[unseen] " + " good[no_place] \
            " excluded is not the " scatter_rcv " with Received headers")
    if ((still in total) && (never in total) && total[still] > total[never])
        problem("\"" still "\": " total[still] " cases, more than the " total[never] " tried")

    if (problems) {
        printf "corpus gate: FAILED, %d problem(s) above (%s, %s set, %d messages)\n", problems, corpus, set_name, messages
        exit 1
    }
    printf "corpus gate: passed, %d figures within their floors, totals match manifest.tsv (%s, %s set, %d messages)\n", gated, corpus, set_name, messages
}
' "$floors" "$corpus/manifest.tsv" "$out"
