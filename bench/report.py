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
| pipeline: worker (sequencer, ledger, tables, balance-changed) | {pipe["events_per_s"]:,.0f} events/s, **{pipe["ratio_to_baseline"]:.2f}x** the baseline | >= 0.25x (aim 0.5x) |
{_changelog_row(pipe)}{stop_rows}| lookup, {lookup["concurrency"]} concurrent clients, keys owned by the asked worker | p50 {lookup["local"]["p50_ms"]} ms, p99 {lookup["local"]["p99_ms"]} ms ({lookup["local"]["count"]:,} requests) | p99 <= 10 ms |
| lookup, {lookup["concurrency"]} concurrent clients, keys routed to the other worker | p50 {lookup["routed"]["p50_ms"]} ms, p99 {lookup["routed"]["p99_ms"]} ms ({lookup["routed"]["count"]:,} requests) | |
| lookup throughput ({lookup["concurrency"]} concurrent clients) | {lookup["requests_per_s"]:,.0f} requests/s{_lookup_cpu(lookup)} | |
{_light_row(report.get("lookup_light"))}| replay from a file ({rf["events"]:,} events) | {rf["events_per_s"]:,.0f} events/s | >= 60,000 events/s |
{_parallel_rows(rf)}| replay from Kafka ({rk["events"]:,} events) | {rk["events_per_s"]:,.0f} events/s | |
{_gateway_rows(report.get("gateway"))}{_projections_rows(report.get("projections"))}{_soak_rows(report.get("soak"))}"""


def _parallel_rows(replay_file: dict) -> str:
    return "".join(f"| replay from a file, `--workers {run['workers']}` | {run['events_per_s']:,.0f} events/s, "
                   f"speed-up {run['speedup']}x | |\n" for run in replay_file.get("parallel", ()))


def _changelog_row(pipe: dict) -> str:
    per_event = pipe.get("changelog_bytes_per_usage_event")
    if per_event is None and "changelog_method" not in pipe:
        return ""
    figure = "n/a" if per_event is None else f"**{per_event:,.0f} B** per usage event applied"
    records, payload = pipe.get("changelog_records_per_usage_event"), pipe.get("changelog_payload_bytes_per_usage_event")
    details = []
    if records is not None:
        details.append(f"{records:.2f} records per event")
    if payload is not None:
        details.append(f"key + value {payload:,.0f} B per event")
    topics = ", ".join(f"`{t}`" for t in pipe.get("changelog_topics", []))
    return (f"| changelog bytes written during the pipeline's usage phase ({topics}; {pipe['changelog_method']}) | "
            f"{figure}{' (' + ', '.join(details) + ')' if details else ''} | <= 1 KB/event (aim 256 B) |\n")


def _stop_rows(label: str, stop: dict) -> str:
    note = "" if stop["sustained"] else "; not sustained: stopped after consecutive timeouts"
    steady = stop.get("steady_state")
    if steady:
        note += (f"; load on {steady['busy_accounts']} busy accounts, each sent {steady['events_per_account']} usage "
                 f"events first{'' if steady['caught_up'] else ' (steady state not reached: backlog left)'}")
    return (f"| stop service under {stop['background_rate_target']:,} events/s ({label}{note}): exhaust -> lookup "
            f"`allowed: false` | p50 {_ms(stop['lookup']['p50_ms'])}, p99 {_ms(stop['lookup']['p99_ms'])}, "
            f"max {_ms(stop['lookup']['max_ms'])} over {stop['lookup']['count']} ({stop['timeouts']} timeouts of 10 s); "
            f"worker applied {stop['worker_events_per_s_during']:,.0f} events/s | p99 <= 250 ms |\n"
            f"| same: exhaust -> record on `quota-status` | p50 {_ms(stop['status_topic']['p50_ms'])}, "
            f"p99 {_ms(stop['status_topic']['p99_ms'])}, max {_ms(stop['status_topic']['max_ms'])} | |\n")


def _light_row(light: dict | None) -> str:
    if light is None:
        return ""
    return (f"| lookup with {light['concurrency']} concurrent clients: owned keys / routed keys | "
            f"p50 {light['local']['p50_ms']} ms, p99 {light['local']['p99_ms']} ms / p50 {light['routed']['p50_ms']} ms, "
            f"p99 {light['routed']['p99_ms']} ms; {light['requests_per_s']:,.0f} requests/s | p99 <= 10 ms (owned) |\n")


def _gateway_rows(gateway: dict | None) -> str:
    """The gateway section (bench/gateway.py): decision, overhead, stop-service through the gateway."""
    if gateway is None:
        return ""
    d, o, s = gateway["decision"], gateway["overhead"], gateway["stop"]
    direct, through = o["direct"], o["gateway"]
    rows = (f"| gateway: `QuotaCache.decide` in process ({d['keys']:,} keys, {d['statuses']:,} statuses, "
            f"{d['decisions']:,} decisions) | p50 {d['p50_us']} µs, **p99 {d['p99_us']} µs**, max {d['max_us']} µs "
            f"| p99 <= {d['target_p99_us']:g} µs |\n")
    live = gateway.get("live_decision")
    if live and live.get("count"):
        rows += (f"| gateway: live decision histogram (`tokenplan_gateway_decision_seconds`, {live['count']:,} "
                 f"decisions of the overhead run) | mean {live['mean_us']} µs, p50 <= {live['p50_le_us']} µs, "
                 f"p99 <= {live['p99_le_us']} µs (bucket bounds) | |\n")
    rows += (f"| gateway overhead: {o['request']}, {o['concurrency']} concurrent, upstream-sim "
             f"`--latency-ms {o['upstream_latency_ms']}`, {o['requests_per_target']:,} requests each way | "
             f"direct p50 {_ms(direct['p50_ms'])}, p99 {_ms(direct['p99_ms'])} ({direct['requests_per_s']:,.0f} req/s); "
             f"through the gateway p50 {_ms(through['p50_ms'])}, p99 {_ms(through['p99_ms'])} "
             f"({through['requests_per_s']:,.0f} req/s); **added p50 {_ms(o['added_p50_ms'])}, "
             f"p99 {_ms(o['added_p99_ms'])}** | |\n")
    first, exhausted = s["first_refusal"], s["exhausted_refusal"]
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(s["first_refusal_reasons"].items()))
    rows += (f"| gateway stop-service: exhausting reply -> first 429 of the account's next request "
             f"({s['exhaustions']} exhaustions, {s['parallel']} at a time, polled every {s['poll_interval_ms']:g} ms; "
             f"first refusal reasons: {reasons or 'none'}) | p50 {_ms(first['p50_ms'])}, p99 {_ms(first['p99_ms'])}, "
             f"max {_ms(first['max_ms'])} over {first['count']} | |\n"
             f"| same: exhausting reply -> first 429 `exhausted` (the worker's status in the gateway's cache) | "
             f"p50 {_ms(exhausted['p50_ms'])}, p99 {_ms(exhausted['p99_ms'])}, max {_ms(exhausted['max_ms'])} over "
             f"{exhausted['count']} ({s['timeouts']} timeouts of 10 s) | |\n")
    return rows


def _projections_rows(projections: dict | None) -> str:
    """The projections section (bench/projections.py): projector rate, fact -> row lag, dashboard API."""
    if projections is None:
        return ""
    load, through, lag, dash = (projections["load"], projections["throughput"], projections["lag"],
                                projections["dashboard"])
    pipeline = through.get("pipeline_events_per_s")
    rows = ""
    for name in ("sqlite", "postgresql"):
        run = through.get(name) or {}
        label = "SQLite" if name == "sqlite" else "PostgreSQL (deploy/local-postgres)"
        if "skipped" in run:
            rows += f"| projector into {label} | skipped: {run['skipped']} | |\n"
            continue
        ratio = through.get(f"{name}_to_pipeline")
        versus = (f", **{ratio:.2f}x** the pipeline's {pipeline:,.0f} events/s" if ratio is not None and pipeline
                  else "; the pipeline section did not run: no ratio")
        rate = "n/a" if run.get("events_per_s") is None else f"{run['events_per_s']:,.0f} records/s"
        fold = "" if run.get("fold_events_per_s") is None else f", fold alone {run['fold_events_per_s']:,.0f}/s"
        rows += (f"| projector into {label}: the facts of {load['accounts']:,} accounts and {load['usage_facts']:,} "
                 f"usage events ({run['records']:,} records of the four fact topics, {run['batches']} batches of at "
                 f"most {run['batch_max']:,}) | {rate}{fold}{versus} | |\n")
    every, usage = lag["all_facts"], lag["usage_facts"]
    rows += (f"| projector lag, fact -> row (Kafka record time -> commit of its batch), usage at "
             f"{lag['rate_target']:,}/s for {lag['seconds']:g} s, projector live with its defaults | "
             f"p50 {_ms(every['p50_ms'])}, **p99 {_ms(every['p99_ms'])}**, max {_ms(every['max_ms'])} over "
             f"{every['count']:,} facts (usage facts: p99 {_ms(usage['p99_ms'])}, {lag['usage_facts_folded']:,} of "
             f"{lag['usage_events_sent']:,}{_load_note(lag)}) | |\n")
    for name, what in (("usage", "`GET /api/accounts/{id}/usage?bucket=hour` (the month)"),
                       ("forecast", "`GET /api/accounts/{id}/forecast`")):
        timing = dash[name]
        extra = ", ".join(([f"{timing['bytes']:,} B"] if "bytes" in timing else [])
                          + ([f"{timing['rows']:,} rows"] if "rows" in timing else []))
        rows += (f"| dashboard API {what}, one account with {dash['days']} days x 24 h x {dash['models']} models "
                 f"of hourly usage (SQLite, 1 request in flight; `{dash['provider'].split(' ')[0]}`) | "
                 f"p50 {_ms(timing['p50_ms'])}, **p99 {_ms(timing['p99_ms'])}**, max {_ms(timing['max_ms'])} over "
                 f"{timing['count']:,}{' (' + extra + ')' if extra else ''} | |\n")
    return rows


def _load_note(lag: dict) -> str:
    load = lag.get("load_average")
    return f"; {lag['batches']} batches, load average {load[0]} -> {load[1]}" if load and "batches" in lag else ""


def _soak_rows(soak: dict | None) -> str:
    if soak is None:
        return ""
    within = "within" if soak["rss_within_tolerance"] else "**outside**"
    kept = ("kept up" if soak["kept_up"] else f"**fell behind** ({soak['lag_at_end']:,} events not applied at the end"
            f"{', drained' if soak['drained'] else ', not drained'} within {soak['drain_seconds']} s after)")
    capacity = soak.get("capacity")
    rate_note = ("" if not capacity else f" (half the {capacity['events_per_s']:,.0f} events/s at which the worker "
                 f"applied a backlog of {capacity['events']:,} usage events over the same accounts)")
    return (f"| soak: {soak['accounts']:,} max-plan accounts, {soak['rate_target']:,} usage events/s{rate_note} for "
            f"{soak['seconds']:,.0f} s: worker RSS at the start of the load, after {soak['warmup_seconds']:.0f} s "
            f"(record cache and RocksDB memtables filled) -> end (max) | {soak['rss_start_mib']}, "
            f"{soak['rss_warm_mib']} -> {soak['rss_end_mib']} MiB (max {soak['rss_max_mib']}), "
            f"x{soak['rss_end_to_warm']:.2f} of the warm figure: {within} "
            f"±{soak['rss_tolerance']:.0%}{'; the faust worker was started again during it' if soak.get('worker_restarted') else ''}"
            f" | RSS within ±15% |\n"
            f"| soak: events applied by the worker | {soak['applied_events_per_s']:,.0f} events/s "
            f"({soak['events_applied']:,} of {soak['events_sent']:,} sent); {kept} | |\n")


def _ms(value) -> str:
    return "n/a" if value is None or value != value else f"{value} ms"


def _lookup_cpu(lookup: dict) -> str:
    """Where the lookups' CPU went and how long the bench waited for the machine to rest."""
    cpu, rest = lookup.get("cpu_ms_per_request"), lookup.get("machine_rest")
    if not cpu:
        return ""
    text = (f"; CPU per request: client {cpu['client']} ms, workers {' / '.join(map(str, cpu['workers']))} ms; "
            f"other processes {lookup['other_processes_cores']} cores")
    if rest:
        text += (f"; started after {rest['waited_s']} s at {rest['busy_cores']} busy cores"
                 + ("" if rest["idle"] else " (the machine did not come to rest)"))
    return text
