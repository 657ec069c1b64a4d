#!/usr/bin/env bash
# Runs factstr-bench's PostgreSQL rows (--side-by-side) and the published
# factstr-postgres 0.5.2 on the same workloads, one after the other on one
# server, ROUNDS times (default 3), so both land in the same minutes. Each
# 0.5.2 run prints its ratios against the factstr-bench run just before it.
#
#   bench/factstr-052-postgres/compare.sh [--quick]
#
# Uses DATABASE_URL, or starts a throwaway server with scripts/postgres.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -z "${DATABASE_URL:-}" ]]; then
    eval "$(scripts/postgres start)"
    trap 'scripts/postgres stop' EXIT
    export DATABASE_URL="$FACTSTR_TEST_DATABASE_URL"
fi

cargo build --quiet --release -p factstr-bench
cargo build --quiet --release --manifest-path bench/factstr-052-postgres/Cargo.toml

mkdir -p bench-results
for round in $(seq "${ROUNDS:-3}"); do
    echo "==> round $round: factstr-bench --store postgres --side-by-side $*"
    cargo run --quiet --release -p factstr-bench -- --store postgres --side-by-side "$@" \
        --output "bench-results/postgres-side-by-side-$round.json"
    echo "==> round $round: factstr-postgres 0.5.2 $*"
    cargo run --quiet --release --manifest-path bench/factstr-052-postgres/Cargo.toml -- "$@" \
        --compare "bench-results/postgres-side-by-side-$round.json"
done
