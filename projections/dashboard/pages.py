"""The HTML of the two pages: plain server-side markup, a small inline stylesheet, no script.

Figures people compare carry an `id` and their exact value in `data-value` (the API's
string), while the text shows it with thousands separators.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from urllib.parse import quote

from projections.dashboard import charts
from projections.dashboard.formatting import decimal_text, grouped, instant_text, short_instant

__all__ = ["layout", "account_page", "operator_page", "not_found_page", "error_page"]

CSS = """
:root { --ink:#1f2933; --muted:#65717e; --line:#e3e6ea; --card:#fff; --bg:#f5f7fa; --accent:#0072B2; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--ink); background:var(--bg); }
header { background:#1f2933; color:#fff; padding:10px 24px; display:flex; gap:24px; align-items:center; }
header a { color:#fff; text-decoration:none; font-weight:600; }
header form { margin-left:auto; } header input { padding:4px 8px; border-radius:4px; border:0; width:220px; }
main { max-width:1100px; margin:0 auto; padding:20px 24px 40px; }
h1 { font-size:22px; margin:4px 0 2px; } h2 { font-size:15px; margin:0 0 10px; color:#333; }
.sub { color:var(--muted); margin-bottom:16px; }
.grid { display:grid; grid-template-columns: minmax(260px, 1fr) minmax(420px, 2fr); gap:16px; }
@media (max-width: 800px) { .grid { grid-template-columns: 1fr; } }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:16px 18px; margin-bottom:16px; }
.big { font-size:30px; font-weight:650; font-variant-numeric: tabular-nums; }
.note { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; width:100%; font-variant-numeric: tabular-nums; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { color:var(--muted); font-weight:600; font-size:12px; }
td.num, th.num { text-align:right; }
tr.total td { font-weight:600; border-top:2px solid var(--line); }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; background:#7F7F7F; }
.badge.active { background:#009E73; } .badge.exhausted { background:#D55E00; } .badge.expired { background:#7F7F7F; }
.badge.failed { background:#D55E00; } .badge.pending { background:#E69F00; }
.badge.suspended { background:#D55E00; } .badge.policy-warning { background:#E69F00; }
.badge.key-suspended { background:#D55E00; } .badge.key-reinstated { background:#009E73; }
h3 { font-size:14px; margin:14px 0 6px; } details summary { cursor:pointer; color:var(--muted); margin:6px 0; }
code { font-size:12px; } .card .scroll + .scroll { margin-top:10px; }
.tabs a { margin-right:10px; } .tabs a.on { font-weight:700; color:var(--ink); text-decoration:none; }
a { color:var(--accent); }
.empty { color:var(--muted); font-style:italic; }
.scroll { overflow-x:auto; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:16px; }
"""


def layout(title: str, body: str, footer: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><style>{CSS}</style></head><body>'
            f'<header><a href="/">tokenplan dashboard</a><a href="/api/fleet">API</a>'
            f'<form action="/accounts" method="get"><input name="id" placeholder="account id" aria-label="account id">'
            f'</form></header><main>{body}</main><footer>{footer}</footer></body></html>')


def _attrs(ident: str | None, value) -> str:
    """id and data-value (a number's exact API spelling) of a figure."""
    parts = [f'id="{escape(ident)}"'] if ident else []
    if isinstance(value, (Decimal, int)) and not isinstance(value, bool):
        parts.append(f'data-value="{decimal_text(value)}"')
    elif value is not None:
        parts.append(f'data-value="{escape(str(value))}"')
    return " ".join(parts)


def num(value, ident: str | None = None, places: int | None = None) -> str:
    """A numeric cell: grouped text (rounded to `places` if given), exact data-value."""
    shown = value if places is None or value is None else round(Decimal(value), places)
    return f'<td class="num" {_attrs(ident, value)}>{grouped(shown)}</td>'


def cell(text: object, ident: str | None = None) -> str:
    return f'<td {_attrs(ident, None)}>{escape("–" if text is None else str(text))}</td>'


def when(value: datetime | None) -> str:
    return f'<td data-value="{instant_text(value) or ""}">{short_instant(value)}</td>'


def table(headers: Sequence[str], rows: Iterable[str], empty: str, numeric: Sequence[int] = ()) -> str:
    rows = list(rows)
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def badge(status: str | None, ident: str | None = "status") -> str:
    name = status or "none"
    anchor = f' id="{ident}"' if ident else ""
    return f'<span class="badge {escape(name)}"{anchor} data-value="{escape(name)}">{escape(name)}</span>'


def card(title: str, content: str, ident: str = "") -> str:
    anchor = f' id="{ident}"' if ident else ""
    return f'<section class="card"{anchor}><h2>{escape(title)}</h2>{content}</section>'


def duration(delta: timedelta) -> str:
    """'3 d 4 h', '5 h 12 min', '40 min'."""
    minutes = int(delta.total_seconds() // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {mins} min" if hours else f"{mins} min"


# -- account page ------------------------------------------------------------------------------

def _credits_card(view: dict) -> str:
    figures, status = view["credits"], view["status"]
    if figures is None:
        return card("Remaining credits", '<p class="empty">no package yet</p>')
    gauge = charts.credit_gauge(figures["credits_limit"], figures["credits_used"], figures["credits_remaining"])
    source = (f'after the last balance change at {short_instant(figures["at"])} (balance-changed)'
              if figures["source"] == "balance-changed" else "from the latest quota-status record")
    as_of = ""
    if status is not None:
        as_of = (f'; status record as of <span id="as-of" data-value="{instant_text(status["as_of"]["computed_at"])}">'
                 f'{short_instant(status["as_of"]["computed_at"])}</span> (last event '
                 f'{short_instant(status["as_of"]["event_time"])})')
    big = (f'<div><span class="big" {_attrs("credits-remaining", figures["credits_remaining"])}>'
           f'{grouped(figures["credits_remaining"])}</span> credits left of '
           f'<span {_attrs("credits-limit", figures["credits_limit"])}>{grouped(figures["credits_limit"])}</span> '
           f'· used <span {_attrs("credits-used", figures["credits_used"])}>{grouped(figures["credits_used"])}</span></div>')
    return card("Remaining credits", big + gauge + f'<p class="note">{source}{as_of}. The worker\'s lookup '
                "(/accounts/ID/quota) gives the same figures once the projector has caught up.</p>", "credits")


def _pace_row(pace: dict, now: datetime) -> str:
    if pace["run_out_at"] is not None:
        outcome = f'{short_instant(pace["run_out_at"])} (in {duration(pace["run_out_at"] - now)})'
    elif pace["outlasts_package"]:
        outcome = "outlasts the package"
    else:
        outcome = "no usage: no run-out"
    window = f'last {pace["window_hours"] // 24} d' if pace["window_hours"] >= 48 else f'last {pace["window_hours"]} h'
    return (f'<tr>{cell(window)}{num(pace["covered_hours"], places=1)}{num(pace["credits"], places=0)}'
            f'{num(pace["credits_offpeak"], places=0)}{num(pace["peak_equivalent_per_hour"], places=0)}<td id="run-out-{pace["window_hours"]}h" '
            f'data-value="{instant_text(pace["run_out_at"]) or ""}">{escape(outcome)}</td></tr>')


def _forecast_card(result: dict) -> str:
    if not result["paces"]:
        return card("Forecast", '<p class="empty">no package valid now: nothing to run out</p>', "forecast")
    first = result["paces"][0]
    if first["run_out_at"] is not None:
        headline = f'At the last {first["window_hours"]} h\'s pace the credits run out on <b>{short_instant(first["run_out_at"])}</b>'
    elif first["outlasts_package"]:
        headline = f'At the last {first["window_hours"]} h\'s pace the package ends first ({short_instant(result["valid_until"])})'
    else:
        headline = "No usage in the last 24 h: no run-out at this pace"
    rows = [_pace_row(pace, result["now"]) for pace in result["paces"]]
    figures = table(["window", "hours measured", "credits", "of which off-peak", "peak-equiv. credits/h", "runs out"],
                    rows, "no figures", numeric=(1, 2, 3, 4))
    return card("Forecast", f"<p>{headline}.</p>{figures}<p class='note'>{escape(result['rule'])}. "
                f"Remaining {grouped(result['credits_remaining'])} credits at {short_instant(result['now'])}.</p>",
                "forecast")


def _buckets(start: datetime, end: datetime, bucket: str) -> list[datetime]:
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    out, at = [], start
    while at < end:
        out.append(at)
        at += step
    return out


def _by_credits(rows: list[dict]) -> list[str]:
    """Models by credits in the range, biggest first (they get the first colours; free models last)."""
    credits: dict[str, Decimal] = {}
    for row in rows:
        credits[row["model"]] = credits.get(row["model"], Decimal(0)) + row["credits"]
    return sorted(credits, key=lambda model: (-credits[model], model))


def _usage_card(account_id: str, rows: list[dict], start: datetime, end: datetime, bucket: str) -> str:
    models = _by_credits(rows)
    buckets = _buckets(start, end, bucket)
    index = {at: i for i, at in enumerate(buckets)}
    series = {model: [Decimal(0)] * len(buckets) for model in models}
    for row in rows:
        if row["bucket_start"] in index:
            series[row["model"]][index[row["bucket_start"]]] += row["credits"]
    link = f"/accounts/{quote(account_id, safe='')}"
    tabs = "".join(f'<a class="{"on" if name == bucket else ""}" href="{link}?bucket={name}">per {name}</a>'
                   for name in ("hour", "day"))
    span = f'{short_instant(start)} – {short_instant(end)}'
    chart = charts.stacked_bars(buckets, series, bucket)
    return card("Usage by model", f'<div class="tabs">{tabs}<span class="note">{span}; shaded: off-peak '
                f'(UTC 16:00–24:00, charged 0.8x)</span></div>{chart}{_model_table(rows, models)}', "usage")


def _model_table(rows: list[dict], models: list[str]) -> str:
    names = ("requests", "input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens", "credits",
             "credits_offpeak", "credits_saved")
    sums = {model: {name: sum((r[name] for r in rows if r["model"] == model), 0) for name in names} for model in models}
    body = [f'<tr><td><svg width="10" height="10"><rect width="10" height="10" fill="{charts.color(i)}"/></svg> '
            f'{escape(model)}</td>' + "".join(num(sums[model][name], f"model-{model}-{name}") for name in names) + "</tr>"
            for i, model in enumerate(models)]
    if models:
        body.append('<tr class="total"><td>total</td>' + "".join(
            num(sum((sums[m][name] for m in models), 0), f"total-{name}") for name in names) + "</tr>")
    return table(["model", "requests", "cache-hit in", "cache-miss in", "output", "credits", "off-peak credits",
                  "saved"], body, "no usage in this range", numeric=range(1, 8))


def _peak_card(totals: dict[str, dict]) -> str:
    credits = sum((t["credits"] for t in totals.values()), Decimal(0))
    offpeak = sum((t["credits_offpeak"] for t in totals.values()), Decimal(0))
    saved = sum((t["credits_saved"] for t in totals.values()), Decimal(0))
    text = (f'<p>Off-peak usage saved <b {_attrs("credits-saved", saved)}>{grouped(saved)}</b> credits '
            f'(of <span {_attrs("credits-total", credits)}>{grouped(credits)}</span> charged in this package, '
            f'<span {_attrs("credits-offpeak", offpeak)}>{grouped(offpeak)}</span> off-peak).</p>')
    return card("Peak and off-peak, this package", text + charts.peak_offpeak_bars(credits - offpeak, offpeak, saved),
                "peak")


def _charges_card(charges: list[dict]) -> str:
    rows = [f'<tr>{when(c["at"])}{cell(c["cause_type"])}{num(c["credits_charged"])}{num(c["credits_used"])}'
            f'{num(c["credits_remaining"])}{num(c["credits_limit"])}</tr>' for c in charges]
    return card("Recent charges and balance changes", table(
        ["at", "cause", "charged", "used after", "remaining after", "pool"], rows, "none yet", numeric=(2, 3, 4, 5)),
        "charges")


def _alert_what(alert: dict) -> str:
    """'90 % of the pool' (crossing n after a refresh) or 'policy.warning of key k-1'."""
    if alert["threshold"] is not None:
        again = f" (crossing {alert['crossing']})" if (alert["crossing"] or 1) > 1 else ""
        return f"{alert['threshold']} % of the pool{again}"
    return f"{alert['kind']} of key {alert['key_id']}"


def _alerts_card(alerts: list[dict]) -> str:
    rows = [f'<tr>{when(a["at"])}{cell(_alert_what(a))}{num(a["credits_used"])}{num(a["credits_limit"])}'
            f'{cell("yes" if a["published_at"] else "not yet")}</tr>' for a in alerts]
    return card("Alerts", table(["at", "alert", "used", "pool", "published"], rows,
                                "no threshold crossed, no policy warning", numeric=(2, 3)), "alerts")


def _packages_card(packages: list[dict]) -> str:
    rows = [f'<tr>{when(p["valid_from"])}{when(p["valid_until"])}{cell(p["tier"] + " " + p["period"])}'
            f'{num(p["credits_limit"])}{when(p["paid_at"])}'
            f'<td class="num">{grouped(p["amount"]) if p["amount"] is not None else "–"} {escape(p["currency"] or "")}</td>'
            f'{cell(p["discount"])}</tr>' for p in packages]
    return card("Packages and payments", table(
        ["from", "until", "package", "pool", "paid at", "amount", "discount"], rows,
        "no package", numeric=(3, 5)), "packages")


def _quota_card(events: list[dict]) -> str:
    rows = [f'<tr>{when(e["at"])}{cell(e["type"])}{cell(e["cause_type"])}{cell(e["tier"])}{num(e["credits_used"])}'
            f'{num(e["credits_limit"])}</tr>' for e in events]
    return card("Exhaustions and restorations", table(["at", "fact", "cause", "tier", "used", "pool"], rows,
                                                      "never exhausted", numeric=(4, 5)), "quota")


def _requests_cell(fact: dict, shown: int = 5) -> str:
    """The first request event ids that triggered a fact, and how many there were."""
    ids = fact["request_event_ids"]
    listed = ", ".join(f"<code>{escape(i)}</code>" for i in ids[:shown])
    more = f' <span class="note">+ {len(ids) - shown} more</span>' if len(ids) > shown else ""
    count = f'<span id="policy-requests-{escape(fact["event_id"])}" data-value="{fact["requests"]}">{fact["requests"]}</span>'
    return f'<td style="white-space:normal">{count}{": " + listed if ids else ""}{more}</td>'


def _rules_text(rules: dict[str, int]) -> str:
    return ", ".join(f"{rule} × {grouped(count)}" for rule, count in sorted(rules.items(), key=lambda r: (-r[1], r[0])))


def _policy_key(key: dict) -> str:
    ident = key["key_id"]
    since = (f' since {short_instant(key["changed_at"])}' if key["changed_at"] is not None else "")
    head = (f'<h3>{escape(ident)} {badge(key["status"], "policy-status-" + ident)}<span class="note">{since}</span>'
            f'</h3>')
    rules = [f'<tr>{cell(rule)}{num(count, f"policy-rule-{ident}-{rule}")}</tr>'
             for rule, count in sorted(key["violations_by_rule_24h"].items(), key=lambda r: (-r[1], r[0]))]
    total = (f'<p>Non-coding requests in the last 24 h: <b {_attrs("policy-violations-24h-" + ident, key["violations_24h"])}>'
             f'{grouped(key["violations_24h"])}</b></p>')
    by_rule = table(["rule", "requests"], rules, "none in the last 24 h", numeric=(1,)) if rules else ""
    facts = [f'<tr>{when(f["at"])}<td><span class="badge {escape(f["type"].replace(".", "-"))}">{escape(f["type"])}'
             f'</span></td>{num(f["violations"])}<td style="white-space:normal">{escape(_rules_text(f["rules"]))}</td>'
             f'{_requests_cell(f)}<td style="white-space:normal">{escape(f["message"])}</td></tr>' for f in key["facts"]]
    history = table(["at", "fact", "violations", "rules", "triggering requests", "message"], facts,
                    "no warning or suspension", numeric=(2,))
    recent = [f'<tr>{when(v["at"])}<td><code>{escape(v["request_event_id"])}</code></td>{cell(v["rule"])}'
              f'{cell(v["client"])}</tr>' for v in key["recent_violations"]]
    latest = ""
    if recent:
        latest = (f'<details><summary>latest {len(recent)} non-coding requests</summary>'
                  + table(["at", "request", "rule", "client"], recent, "") + "</details>")
    return head + total + by_rule + history + latest


def _suspended_note(policy: dict | None) -> str:
    if not policy or not policy["suspended"]:
        return ""
    return f' · <a href="#policy">{policy["suspended"]} key(s) suspended</a> for non-coding use'


def _policy_card(policy: dict | None) -> str:
    if policy is None or not policy["keys"]:
        return card("Usage policy", '<p class="empty">no non-coding request seen for this account\'s keys</p>',
                    "policy")
    keys = policy["keys"]
    summary = (f'<p><span {_attrs("policy-keys", len(keys))}>{len(keys)}</span> key(s) with violations or policy '
               f'facts, <b {_attrs("policy-suspended", policy["suspended"])}>{policy["suspended"]}</b> suspended.</p>')
    note = ('<p class="note">state: the latest key.suspended / key.reinstated fact of the key (tokenplan.policy-facts); '
            f'violations: policy.violation events (tokenplan.policy) over {short_instant(policy["from"])} – '
            f'{short_instant(policy["to"])}; JSON: /api/accounts/ID/policy.</p>')
    return card("Usage policy", summary + "".join(_policy_key(key) for key in keys) + note, "policy")


def account_page(data: dict) -> str:
    """`data`: view, forecast, usage rows + range, totals, charges, alerts, packages, quota events."""
    view, status = data["view"], data["view"]["status"] or {}
    head = (f'<h1>{escape(view["account_id"])} {badge(status.get("status"))}</h1><div class="sub">'
            f'{escape(str(status.get("tier") or "no tier"))} {escape(str(status.get("period") or ""))} · '
            f'{short_instant(status.get("valid_from"))} – {short_instant(status.get("valid_until"))} · '
            f'gateways {"serve" if status.get("allowed") else "refuse"} it{_suspended_note(data.get("policy"))}</div>')
    body = (head + _credits_card(view) + _forecast_card(data["forecast"]) + _usage_card(view["account_id"], data["usage"], data["start"], data["end"], data["bucket"])
            + _peak_card(data["totals"]) + _charges_card(data["charges"]) + _alerts_card(data["alerts"])
            + _packages_card(data["packages"]) + _quota_card(data["quota"]) + _policy_card(data.get("policy")))
    return layout(f'{view["account_id"]} · tokenplan', body, data.get("footer", ""))


# -- operator page -----------------------------------------------------------------------------

def _rate(value: float | None) -> str:
    return "measuring…" if value is None else f"{value:,.1f}"


def _topics_card(ops: dict) -> str:
    rows = [f'<tr>{cell(t["topic"])}{num(t["partitions"])}{num(t["folded"], "folded-" + t["topic"])}'
            f'{num(t["highwater"])}{num(t["lag"], "lag-" + t["topic"])}'
            f'<td class="num" id="rate-{escape(t["topic"])}">{_rate(t["records_per_s"])}</td></tr>' for t in ops["topics"]]
    worker = ""
    if ops.get("worker"):
        w = ops["worker"]
        worker = (f'<p>Worker {escape(w["url"])}: ' + (escape(w["error"]) if w.get("error") else
                  ", ".join(f'{escape(k)} {grouped(v)} applied ({_rate(w["rates"].get(k))}/s)'
                            for k, v in w["consumed"].items())) + "</p>")
    note = (f'folded = offsets stored by the projector with its rows (projector_offsets); high-water marks '
            f'from Kafka ({escape(ops["kafka"] or "not read")}); lag = high-water − folded; records/s = growth of '
            f'the folded offsets between this dashboard\'s samples (every {ops["sample_s"]:.0f} s, over the last '
            f'{ops["span_s"]:.0f} s).')
    return card("Projector throughput and lag per topic", table(
        ["topic", "partitions", "folded", "high-water", "lag", "records/s"], rows, "no topics yet",
        numeric=(1, 2, 3, 4, 5)) + worker + f'<p class="note">{note}</p>', "topics")


def _status_card(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    rows = [f'<tr><td>{badge(name, None)}</td>{num(count, "accounts-" + name)}'
            f'<td style="width:50%"><div style="background:#cfd8e3;height:10px;width:{100 * count / total:.1f}%">'
            f'</div></td></tr>' for name, count in counts.items()]
    return card("Accounts by status", table(["status", "accounts", ""], rows, "no accounts yet", numeric=(1,)), "statuses")


def _account_link(account_id: str | None) -> str:
    if not account_id:
        return "<td>–</td>"
    return f'<td><a href="/accounts/{quote(account_id, safe="")}">{escape(account_id)}</a></td>'


def _exhausted_card(rows: list[dict]) -> str:
    body = [f'<tr>{_account_link(r["account_id"])}{when(r["at"])}{cell(r["tier"])}{num(r["credits_used"])}'
            f'{num(r["credits_limit"])}</tr>' for r in rows]
    return card("Most recently exhausted", table(["account", "at", "tier", "used", "pool"], body,
                                                 "no exhaustion yet", numeric=(3, 4)), "exhausted")


def _dead_letters_card(rows: list[dict]) -> str:
    body = [f'<tr>{cell(r["reason"])}{num(r["count"], "dead-" + r["reason"])}{when(r["latest_at"])}'
            f'{_account_link(r["latest_account_id"])}<td style="white-space:normal">{escape(r["latest_detail"][:160])}</td>'
            f'</tr>' for r in rows]
    return card("Dead letters by reason", table(["reason", "count", "latest", "account", "latest detail"], body,
                                                "no dead letters", numeric=(1,)), "dead-letters")


def _webhooks_card(counts: dict[str, int], rows: list[dict]) -> str:
    summary = ", ".join(f"{grouped(n)} {escape(s)}" for s, n in sorted(counts.items())) or "no webhook deliveries"
    body = [f'<tr>{cell(r["alert_id"])}<td><span class="badge {escape(r["status"])}">{escape(r["status"])}</span></td>'
            f'{num(r["attempts"])}{cell(r["last_status_code"])}<td style="white-space:normal">{escape(r["last_error"] or "")}</td>'
            f'{when(r["last_attempt_at"])}{when(r["next_attempt_at"])}</tr>' for r in rows]
    return card("Webhook failures", f'<p>{summary}</p>' + table(
        ["alert", "status", "attempts", "last HTTP", "last error", "last try", "next try"], body,
        "no failed deliveries", numeric=(2,)), "webhooks")


def _fleet_card(rows: list[dict]) -> str:
    body = [f'<tr>{cell(r["cluster"])}{cell(r["protocol"])}{num(r["requests"])}{num(r["input_cache_hit_tokens"])}'
            f'{num(r["input_cache_miss_tokens"])}{num(r["output_tokens"])}{num(r["credits"])}{num(r["credits_saved"])}'
            f'</tr>' for r in rows]
    return card("Fleet usage, last 24 h", table(
        ["cluster", "protocol", "requests", "cache-hit in", "cache-miss in", "output", "credits", "saved"], body,
        "no usage in the last 24 h", numeric=range(2, 8)), "fleet")


def _suspended_card(rows: list[dict], total: int) -> str:
    body = [f'<tr>{cell(r["key_id"], "suspended-" + r["key_id"])}{_account_link(r["account_id"])}{when(r["changed_at"])}'
            f'<td style="white-space:normal">{escape(r["message"][:160])}</td></tr>' for r in rows]
    shown = f'<p class="note">the latest {len(rows)} of {total}</p>' if total > len(rows) else ""
    return card("Suspended keys", f'<p><b {_attrs("suspended-total", total)}>{grouped(total)}</b> suspended</p>' + table(
        ["key", "account", "since", "why"], body, "no key is suspended") + shown, "suspended-keys")


def operator_page(fleet: dict, ops: dict, footer: str = "") -> str:
    body = (f'<h1>Operations</h1><div class="sub">as of {short_instant(fleet["now"])}</div>'
            + _topics_card(ops) + f'<div class="grid">{_status_card(fleet["accounts_by_status"])}'
            f'{_exhausted_card(fleet["recently_exhausted"])}</div>'
            + _suspended_card(fleet.get("suspended_keys", []), fleet.get("suspended_keys_total", 0)) + _dead_letters_card(fleet["dead_letters_by_reason"])
            + _webhooks_card(fleet["webhook_deliveries"], fleet["webhook_failures"]) + _fleet_card(fleet["usage_24h"]))
    return layout("tokenplan · operations", body, footer)


def not_found_page(account_id: str) -> str:
    return layout("unknown account", f'<h1>Unknown account</h1><p>The projections know nothing about '
                  f'<b>{escape(account_id)}</b> (no status, package or usage). If it was just created, the projector '
                  f'may not have caught up yet.</p><p><a href="/">operations</a></p>')


def error_page(message: str) -> str:
    return layout("dashboard unavailable", f"<h1>Not available</h1><p>{escape(message)}</p>")
