"""The Markdown page of a `tokenplan bench` report (docs/benchmarks.md)."""
from __future__ import annotations


def render_markdown(report: dict) -> str:
    m, base, pipe = report["machine"], report["baseline"], report["pipeline"]
    stops, lookup = report["stop_service"], report["lookup"]
    rf, rk = report["replay_file"], report["replay_kafka"]
    stop_rows = "".join(_stop_rows(label, stop) for label, stop in stops.items())
    return f"""# Benchmarks

Last run: {report["started_at"]} to {report["finished_at"]}, `{report["command"]}`
(the JSON of this run: `docs/benchmarks.json`). Why the pipeline figures are what they
are, and what to change: [performance.md](performance.md).

Machine: {m["cores"]} cores ({m["cpu"]}), {m["memory_gib"]} GiB, Python {m["python"]},
Apache Kafka {m["kafka"]} (deploy/local-kafka, on the same machine as everything else).

| measure | figure | target |
|---|---|---|
| baseline: raw aiokafka consume + produce one message per event | {base["events_per_s"]:,.0f} events/s (rounds: {", ".join(f"{x:,.0f}" for x in base["rounds_events_per_s"])}) | |
| pipeline: worker (sequencer, ledger, tables, balance-changed) | {pipe["events_per_s"]:,.0f} events/s, **{pipe["ratio_to_baseline"]:.2f}x** the baseline | >= 0.5x, aim 0.8x |
{stop_rows}| lookup, {lookup["concurrency"]} concurrent clients, keys owned by the asked worker | p50 {lookup["local"]["p50_ms"]} ms, p99 {lookup["local"]["p99_ms"]} ms ({lookup["local"]["count"]:,} requests) | p99 <= 10 ms |
| lookup, {lookup["concurrency"]} concurrent clients, keys routed to the other worker | p50 {lookup["routed"]["p50_ms"]} ms, p99 {lookup["routed"]["p99_ms"]} ms ({lookup["routed"]["count"]:,} requests) | |
| lookup throughput ({lookup["concurrency"]} concurrent clients) | {lookup["requests_per_s"]:,.0f} requests/s | |
{_light_row(report.get("lookup_light"))}| replay from a file ({rf["events"]:,} events) | {rf["events_per_s"]:,.0f} events/s | 100,000 events/s |
| replay from Kafka ({rk["events"]:,} events) | {rk["events_per_s"]:,.0f} events/s | |
"""


def _stop_rows(label: str, stop: dict) -> str:
    note = "" if stop["sustained"] else "; not sustained: stopped after consecutive timeouts"
    return (f"| stop service under {stop['background_rate_target']:,} events/s ({label}{note}): exhaust -> lookup "
            f"`allowed: false` | p50 {_ms(stop['lookup']['p50_ms'])}, p99 {_ms(stop['lookup']['p99_ms'])}, "
            f"max {_ms(stop['lookup']['max_ms'])} over {stop['lookup']['count']} ({stop['timeouts']} timeouts of 10 s); "
            f"worker applied {stop['worker_events_per_s_during']:,.0f} events/s | p99 <= 250 ms, aim 50 ms |\n"
            f"| same: exhaust -> record on `quota-status` | p50 {_ms(stop['status_topic']['p50_ms'])}, "
            f"p99 {_ms(stop['status_topic']['p99_ms'])}, max {_ms(stop['status_topic']['max_ms'])} | |\n")


def _light_row(light: dict | None) -> str:
    if light is None:
        return ""
    return (f"| lookup with {light['concurrency']} concurrent clients: owned keys / routed keys | "
            f"p50 {light['local']['p50_ms']} ms, p99 {light['local']['p99_ms']} ms / p50 {light['routed']['p50_ms']} ms, "
            f"p99 {light['routed']['p99_ms']} ms; {light['requests_per_s']:,.0f} requests/s | p99 <= 10 ms (owned) |\n")


def _ms(value) -> str:
    return "n/a" if value is None or value != value else f"{value} ms"
