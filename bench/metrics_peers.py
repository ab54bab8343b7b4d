"""Peers of `cargo xtask bench-metrics`: DuckDB and lifetimes doing what Slope does, timed in-process.

Each subcommand prints one JSON object as its last line on stdout, which the xtask reads; anything
else (warnings, progress) goes to stderr. Timings exclude interpreter start-up and imports, so the
peers are measured at their best.
"""

import json
import statistics
import sys
import time


def median_seconds(run, repeat):
    """Runs `run` once to warm caches, then `repeat` times; returns the median time and last result."""
    result = run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def duck():
    import duckdb

    con = duckdb.connect()
    # Slope buckets days in UTC; DuckDB would otherwise cast time stamps with zones in local time.
    con.execute("SET TimeZone = 'UTC'")
    return con


def quoted(path):
    return "'" + path.replace("'", "''") + "'"


def segments_source(listing):
    """`read_parquet` over the segment files named one a line in `listing`: the xtask lists them before
    the server starts, so that a later batch or a compaction cannot change what the peer reads."""
    with open(listing) as f:
        paths = [line.strip() for line in f if line.strip()]
    return "read_parquet([" + ", ".join(quoted(p) for p in paths) + "])"


def ingest(events, out):
    """NDJSON to one Parquet file: the work of `slope ingest` less validation and bookkeeping."""
    con = duck()
    start = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM read_json({quoted(events)}, format='newline_delimited')) "
        f"TO {quoted(out)} (FORMAT parquet)"
    )
    seconds = time.perf_counter() - start
    rows = con.execute(f"SELECT count(*) FROM read_parquet({quoted(out)})").fetchone()[0]
    return {"seconds": seconds, "rows": rows}


# Acceptance per group with users as units: per-user sums first, then the group's sums of squares and
# products, and the delta-method standard error, exactly as crates/metrics/src/acceptance.rs defines it.
GROUPED = """
WITH per_user AS (
    SELECT {keys}, user_id,
           sum(accepted_chars)::DOUBLE AS a, sum(suggested_chars)::DOUBLE AS s, count(*) AS events
    FROM {source}
    GROUP BY ALL
), groups AS (
    SELECT {key_names}, count(*)::DOUBLE AS n, sum(events) AS events,
           sum(a) AS sa, sum(s) AS ss, sum(a * a) AS saa, sum(s * s) AS sss, sum(a * s) AS sas
    FROM per_user
    GROUP BY ALL
)
SELECT {key_names}, n, events, sa, ss, saa, sss, sas, sa / ss AS ratio,
       CASE WHEN n >= 2 THEN sqrt(greatest(0.0,
           ((saa - sa * sa / n) / (n - 1)
            - 2 * (sa / ss) * ((sas - sa * ss / n) / (n - 1))
            + (sa / ss) * (sa / ss) * ((sss - ss * ss / n) / (n - 1)))
           / (n * (ss / n) * (ss / n)))) END AS std_error
FROM groups
WHERE ss > 0
ORDER BY ALL
"""


def acceptance(segments, slope_json, repeat):
    """Acceptance by variant and day over Slope's own segment files, checked against Slope's answer."""
    con = duck()
    sql = GROUPED.format(
        keys="variant, CAST(ts AS DATE) AS day",
        key_names="variant, day",
        source=segments_source(segments),
    )
    median, times, rows = median_seconds(lambda: con.execute(sql).fetchall(), repeat)
    with open(slope_json) as f:
        points = json.load(f)["acceptance"]
    ours = {(p["variant"], p["bucket"]): p for p in points}
    theirs = {(r[0], r[1].isoformat()): r for r in rows}
    common = ours.keys() & theirs.keys()
    value_diff = max((abs(ours[k]["value"] - theirs[k][9]) for k in common), default=None)
    se_diff = max(
        (abs(ours[k]["std_error"] - theirs[k][10]) for k in common if ours[k]["std_error"] is not None),
        default=None,
    )
    count_mismatches = sum(
        1 for k in common if ours[k]["users"] != int(theirs[k][2]) or ours[k]["events"] != int(theirs[k][3])
    )
    return {
        "seconds": median,
        "times": times,
        "groups": len(rows),
        "slope_groups": len(points),
        "common_groups": len(common),
        "max_value_diff": value_diff,
        "max_se_diff": se_diff,
        "count_mismatches": count_mismatches,
    }


def acceptance_by_day(segments, followup, repeat):
    """Acceptance by day over everything stored plus a new batch, recomputed in full."""
    con = duck()
    columns = "CAST(ts AS TIMESTAMPTZ) AS ts, user_id, accepted_chars, suggested_chars"
    source = segments_source(segments)
    if followup:
        source = (
            f"(SELECT {columns} FROM {source} UNION ALL "
            f"SELECT {columns} FROM read_json({quoted(followup)}, format='newline_delimited'))"
        )
    sql = GROUPED.format(keys="CAST(ts AS DATE) AS day", key_names="day", source=source)
    median, times, rows = median_seconds(lambda: con.execute(sql).fetchall(), repeat)
    return {"seconds": median, "times": times, "groups": len(rows)}


def cdnow(out):
    """Writes the CDNOW summary that lifetimes bundles as a CSV Slope reads."""
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    data = load_cdnow_summary_data_with_monetary_value()
    data[["frequency", "recency", "T", "monetary_value"]].to_csv(out, index=False)
    return {"customers": len(data)}


def ltv(summary, repeat):
    """BG/NBD on every customer and Gamma-Gamma on repeat customers, as lifetimes requires."""
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    fit_times = []

    def run():
        data = pd.read_csv(summary)
        start = time.perf_counter()
        bg = BetaGeoFitter(penalizer_coef=0.0).fit(data["frequency"], data["recency"], data["T"])
        spenders = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
        gg = GammaGammaFitter(penalizer_coef=0.0).fit(spenders["frequency"], spenders["monetary_value"])
        fit_times.append(time.perf_counter() - start)
        return bg, gg, len(data), len(spenders)

    # A warm-up is worth it only when each fit is short; large fits run once.
    if repeat > 1:
        median, times, (bg, gg, customers, spenders) = median_seconds(run, repeat)
        fit = statistics.median(fit_times[1:])
    else:
        start = time.perf_counter()
        bg, gg, customers, spenders = run()
        median, times, fit = time.perf_counter() - start, [], fit_times[0]
    return {
        "seconds": median,
        "fit_seconds": fit,
        "times": times,
        "customers": customers,
        "spenders": spenders,
        "r": float(bg.params_["r"]),
        "alpha": float(bg.params_["alpha"]),
        "a": float(bg.params_["a"]),
        "b": float(bg.params_["b"]),
        "p": float(gg.params_["p"]),
        "q": float(gg.params_["q"]),
        "v": float(gg.params_["v"]),
    }


def main(argv):
    command, args = argv[1], argv[2:]
    if command == "ingest":
        result = ingest(args[0], args[1])
    elif command == "acceptance":
        result = acceptance(args[0], args[1], int(args[2]))
    elif command == "acceptance-by-day":
        result = acceptance_by_day(args[0], args[1] if args[1] != "-" else None, int(args[2]))
    elif command == "cdnow":
        result = cdnow(args[0])
    elif command == "ltv":
        result = ltv(args[0], int(args[1]))
    else:
        sys.exit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
