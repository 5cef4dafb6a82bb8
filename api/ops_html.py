"""HTML of the operators' console (``/ops``): one self-contained page, no build step.

Everything is rendered here from :func:`shared.ops.console.snapshot`, so the page
shows exactly the API's figures. Every figure carries ``data-figure="<path>"`` (for
example ``summary.processed``, ``queue.events.ready``, ``actor.dispatch_event.p99_ms``)
so tests and scripts can read it back. CSS and the refresh script are inline, and
the page's Content-Security-Policy forbids fetching anything from anywhere else.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

#: What an absent figure shows (an en dash).
DASH = "\u2013"

#: Seconds between two refreshes of the live part of the page.
REFRESH_SECONDS = 5


def csp(connect: str = "'self'") -> str:
    """The pages' policy: nothing loaded from elsewhere (inline style and script), fetches
    to ``connect`` only."""
    return (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        f"connect-src {connect}; form-action 'self'; img-src data:; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


#: The page may load nothing from elsewhere: inline style and script, same-origin fetches.
CSP = csp()

WINDOWS = (15, 60, 360, 1440)

_CSS = """
:root{--bg:#f6f7f9;--fg:#1d232b;--mute:#6a7480;--card:#fff;--line:#dfe3e8;--ok:#1e8e3e;
--bad:#c5221f;--warn:#b06000;--acc:#1a56db}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e9ed;--mute:#9aa4af;
--card:#1a1f25;--line:#2b323b;--ok:#4cc26a;--bad:#ff6b64;--warn:#f0a040;--acc:#7aa2ff}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,
Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;padding:.75rem 1rem;
background:var(--card);border-bottom:1px solid var(--line);position:sticky;top:0;z-index:1}
header h1{font-size:1.05rem;margin:0}header .grow{flex:1}
main{padding:1rem;max-width:1400px;margin:auto}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:.75rem 1rem;margin:0 0 1rem}
h2{font-size:.95rem;margin:.1rem 0 .6rem;text-transform:uppercase;letter-spacing:.04em;
color:var(--mute)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:.6rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.6rem .8rem}
.card b{display:block;font-size:1.35rem;font-variant-numeric:tabular-nums}
.card span{color:var(--mute);font-size:.8rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);
white-space:nowrap;vertical-align:top}th{color:var(--mute);font-weight:600;font-size:.8rem}
td.num,th.num{text-align:right}td.wrap{white-space:normal;word-break:break-word;min-width:14rem}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.mute{color:var(--mute)}
form.inline{display:inline}button,select,input{font:inherit;padding:.3rem .6rem;
border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--fg)}
button{cursor:pointer}button.danger{color:var(--bad)}
.notice{padding:.5rem 1rem;background:#fff4ce;color:#5c4400;border-radius:6px;margin:0 0 1rem}
.chart{width:100%;height:120px}.legend{font-size:.8rem;color:var(--mute)}
pre{white-space:pre-wrap;word-break:break-word;background:var(--bg);padding:.6rem;
border-radius:6px;font-size:12px}
@media (max-width:600px){main{padding:.5rem}section{padding:.6rem}th,td{padding:.3rem}}
"""

_SCRIPT = """
(function(){
  var live=document.getElementById('live'),state=document.getElementById('state');
  function tick(){
    var u=new URL(location.href);u.searchParams.set('fragment','1');u.searchParams.delete('notice');
    fetch(u,{credentials:'same-origin',headers:{'Accept':'text/html'}}).then(function(r){
      return r.text().then(function(t){
        if(r.ok){live.innerHTML=t;state.textContent='live';state.className='ok';}
        else{state.className='bad';state.textContent='stale ('+r.status+
          (r.status==503?': Redis or a dependency is down':'')+')';}
      });
    }).catch(function(){state.textContent='stale (offline)';state.className='bad';});
  }
  setInterval(tick,REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 1) -> str:
    """Numbers for people: None is a dash, floats keep ``digits`` decimals."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fig(path: str, value: Any, *, digits: int = 1, cls: str = "") -> str:
    """A figure the tests can find: ``<span data-figure="path" data-value="raw">``."""
    raw = "" if value is None else value
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<span data-figure="{esc(path)}" data-value="{esc(raw)}"{klass}>'
        f"{esc(fmt(value, digits))}</span>"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str) -> str:
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="mute">{esc(empty)}</p>'
    head = "".join(
        f'<th class="num">{esc(h[1:])}</th>' if h.startswith("#") else f"<th>{esc(h)}</th>"
        for h in headers
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def td(content: str, *, num: bool = False, wrap: bool = False) -> str:
    klass = "num" if num else "wrap" if wrap else ""
    return f'<td class="{klass}">{content}</td>' if klass else f"<td>{content}</td>"


def _button(action: str, label: str, *, danger: bool = False, **fields: str) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items()
    )
    klass = ' class="danger"' if danger else ""
    return (
        f'<form class="inline" method="post" action="/ops/actions">'
        f'<input type="hidden" name="action" value="{esc(action)}">{hidden}'
        f"<button{klass}>{esc(label)}</button></form>"
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _cards(view: dict[str, Any]) -> str:
    s = view["summary"]
    scheduler = view["scheduler"]
    oldest = s["outbox_oldest_pending_age_seconds"]
    cards = [
        ("summary.processed", s["processed"], f"processed ({view['window']['minutes']} min)", ""),
        ("summary.failed", s["failed"], "failed", "bad" if s["failed"] else ""),
        ("summary.busy", s["busy"], "busy now", ""),
        ("summary.ready", s["ready"], "waiting in queues", ""),
        ("summary.max_latency_seconds", s["max_latency_seconds"], "worst latency (s)", ""),
        ("summary.delayed", s["delayed"], "delayed (retries, scheduled)", ""),
        (
            "summary.dead_letters",
            s["dead_letters"],
            "dead letters",
            "bad" if s["dead_letters"] else "",
        ),
        ("summary.outbox_pending", s["outbox_pending"], "outbox pending", ""),
        ("summary.outbox_oldest_pending_age_seconds", oldest, "oldest pending (s)", ""),
    ]
    if view["scope"]["operator"]:
        cards.insert(
            3, ("summary.processes", s["processes"], f"processes, {s['threads']} threads", "")
        )
    healthy = scheduler["healthy"]
    html_cards = [
        f'<div class="card"><b>{fig(path, value, cls=cls)}</b><span>{esc(label)}</span></div>'
        for path, value, label, cls in cards
    ]
    beat = esc(_age(scheduler["heartbeat_age_seconds"]))
    html_cards.append(
        f'<div class="card"><b>{fig("scheduler.healthy", healthy, cls="ok" if healthy else "bad")}'
        f"</b><span>scheduler heartbeat {beat}</span></div>"
    )
    return f'<div class="cards">{"".join(html_cards)}</div>'


def _chart(series: list[dict[str, Any]]) -> str:
    """Processed (stacked over failed) per minute, as inline SVG bars."""
    if not series:
        return '<p class="mute">Nothing processed in this window.</p>'
    width, height = 600, 100
    peak = max((p["processed"] + p["failed"] for p in series), default=0) or 1
    step = width / len(series)
    bars = []
    for index, point in enumerate(series):
        x = index * step
        ok_h = point["processed"] / peak * height
        bad_h = point["failed"] / peak * height
        title = f"{point['minute']}: {point['processed']} processed, {point['failed']} failed"
        bars.append(
            f"<g><title>{esc(title)}</title>"
            f'<rect x="{x:.2f}" y="{height - ok_h - bad_h:.2f}" width="{max(step - 1, 1):.2f}" '
            f'height="{ok_h:.2f}" fill="var(--ok)"/>'
            f'<rect x="{x:.2f}" y="{height - bad_h:.2f}" width="{max(step - 1, 1):.2f}" '
            f'height="{bad_h:.2f}" fill="var(--bad)"/></g>'
        )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="processed and failed per minute">{"".join(bars)}</svg>'
        f'<div class="legend">per minute, {esc(series[0]["minute"])} to now; peak {peak}/min; '
        f'<span class="ok">■ processed</span> <span class="bad">■ failed</span></div>'
    )


def _busy(view: dict[str, Any]) -> str:
    rows = [
        [
            td(esc(item["process"] or "")),
            td(esc(item["thread"])),
            td(esc(item["actor"])),
            td(esc(item["queue"])),
            td(esc(item["tenant_id"] or "")),
            td(esc(item["args"]), wrap=True),
            td(
                fig(f"busy.{item['message_id']}.running_seconds", item["running_seconds"]), num=True
            ),
        ]
        for item in view["busy"]
    ]
    return _table(
        ["Process", "Thread", "Actor", "Queue", "Tenant", "Arguments", "#Running (s)"],
        rows,
        empty="No message is running right now.",
    )


def _processes(view: dict[str, Any]) -> str:
    now = view["generated_at_unix"]
    rows = [
        [
            td(
                esc(p["identity"])
                + (' <span class="warn">draining</span>' if p.get("draining") else "")
            ),
            td(fig(f"process.{p['identity']}.threads", p["threads"]), num=True),
            td(fig(f"process.{p['identity']}.busy", len(p.get("busy", []))), num=True),
            td(esc(", ".join(p["queues"])), wrap=True),
            td(esc(", ".join(p["paused"]) or DASH)),
            td(esc(sum(p.get("delayed", {}).values())), num=True),
            td(esc(_age(now - p["started_at"])), num=True),
            td(esc(_age(max(now - p["beat_at"], 0.0))), num=True),
        ]
        for p in view["processes"]
    ]
    return _table(
        ["Process", "#Threads", "#Busy", "Queues", "Paused", "#Delayed held", "#Up", "#Beat"],
        rows,
        empty="No worker process is alive.",
    )


def _queues(view: dict[str, Any]) -> str:
    operator = view["scope"]["operator"]
    rows = []
    for q in view["queues"]:
        name = q["queue"]
        latency = q["latency_seconds"]
        latency_cls = "bad" if (latency or 0) > 60 else "warn" if (latency or 0) > 5 else ""
        row = [
            td(esc(name) + (' <span class="warn">paused</span>' if q["paused"] else "")),
            td(fig(f"queue.{name}.ready", q["ready"]), num=True),
            td(fig(f"queue.{name}.in_progress", q["in_progress"]), num=True),
            td(fig(f"queue.{name}.delayed", q["delayed"]), num=True),
            td(fig(f"queue.{name}.dead", q["dead"]), num=True),
            td(fig(f"queue.{name}.latency_seconds", latency, cls=latency_cls), num=True),
            td(fig(f"queue.{name}.paused", q["paused"])),
        ]
        if operator:
            row.append(
                td(
                    _button("resume", "Resume", queue=name)
                    if q["paused"]
                    else _button("pause", "Pause", queue=name)
                )
            )
        rows.append(row)
    headers = [
        "Queue",
        "#Ready",
        "#In progress",
        "#Delayed",
        "#Dead (XQ)",
        "#Latency (s)",
        "Paused",
    ]
    table = _table(headers + ([""] if operator else []), rows, empty="No queues.")
    if view["broker_error"]:
        table = f'<p class="bad">{esc(view["broker_error"])}</p>' + table
    return table


def _actors(view: dict[str, Any]) -> str:
    rows = []
    for a in sorted(view["actors"], key=lambda a: (-a["processed"], a["actor"])):
        name = a["actor"]
        rate = a["failure_rate"]
        rows.append(
            [
                td(esc(name)),
                td(esc(a["queue"])),
                td(fig(f"actor.{name}.processed", a["processed"]), num=True),
                td(
                    fig(f"actor.{name}.failed", a["failed"], cls="bad" if a["failed"] else ""),
                    num=True,
                ),
                td(fig(f"actor.{name}.retried", a["retried"]), num=True),
                td(fig(f"actor.{name}.dead_lettered", a["dead_lettered"]), num=True),
                td(
                    fig(f"actor.{name}.failure_rate", None if rate is None else rate * 100),
                    num=True,
                ),
                td(fig(f"actor.{name}.avg_ms", a["avg_ms"]), num=True),
                td(fig(f"actor.{name}.p50_ms", a["p50_ms"]), num=True),
                td(fig(f"actor.{name}.p95_ms", a["p95_ms"]), num=True),
                td(fig(f"actor.{name}.p99_ms", a["p99_ms"]), num=True),
            ]
        )
    headers = ["Actor", "Queue", "#Processed", "#Failed", "#Retried", "#Dead", "#Fail %",
               "#Avg ms", "#p50 ms", "#p95 ms", "#p99 ms"]  # fmt: skip
    return _table(headers, rows, empty="No actor ran in this window.")


def _tenants(view: dict[str, Any]) -> str:
    rows = []
    for queue, entries in view["tenants"].items():
        for entry in entries:
            tenant = entry["tenant_id"]
            label = entry.get("tenant_name") or tenant
            rows.append(
                [
                    td(esc(queue)),
                    td(f'<span title="{esc(tenant)}">{esc(label)}</span>'),
                    td(fig(f"tenant.{queue}.{tenant}.enqueued", entry["enqueued"]), num=True),
                    td(fig(f"tenant.{queue}.{tenant}.processed", entry["processed"]), num=True),
                    td(fig(f"tenant.{queue}.{tenant}.failed", entry["failed"]), num=True),
                    td(
                        fig(f"tenant.{queue}.{tenant}.dead_lettered", entry["dead_lettered"]),
                        num=True,
                    ),
                ]
            )
    return _table(
        ["Queue", "Tenant", "#Enqueued", "#Processed", "#Failed", "#Dead"],
        rows,
        empty="No tenant's messages in this window.",
    )


def _delayed(view: dict[str, Any]) -> str:
    waiting = view["delayed"]
    if waiting is None:
        return '<p class="mute">Delayed messages can only be listed on the Redis broker.</p>'
    rows = [
        [
            td(esc(item["eta"])),
            td(esc(item["kind"])),
            td(esc(item["queue"])),
            td(esc(item["actor"])),
            td(esc(item["retries"]), num=True),
            td(esc(item["tenant_id"] or "")),
            td(esc(item["args"]), wrap=True),
            td(esc(item["error"] or item.get("reason") or ""), wrap=True),
            td(
                (
                    ""
                    if item["kind"] == "undecodable"
                    else _button("retry", "Run now", queue=item["queue"], id=item["id"]) + " "
                )
                + _button(
                    "delete-delayed", "Delete", danger=True, queue=item["queue"], id=item["id"]
                )
            ),
        ]
        for item in waiting["items"]
    ]
    note = (
        '<p class="warn">Only part of a huge delay queue was read.</p>'
        if waiting["truncated"]
        else ""
    )
    return note + _table(
        ["Runs at", "Kind", "Queue", "Actor", "#Retries", "Tenant", "Arguments", "Last error", ""],
        rows,
        empty="No retries or scheduled messages.",
    )


def _dead_letters(view: dict[str, Any]) -> str:
    rows = [
        [
            td(esc(d["failed_at"][:19].replace("T", " "))),
            td(esc(d["queue"])),
            td(esc(d["actor"])),
            td(esc(d["retries"]), num=True),
            td(esc(d["error"] or ""), wrap=True),
            td(
                f'<a href="/ops/dead-letters/{esc(d["id"])}">Inspect</a> '
                + _button("requeue", "Re-enqueue", id=d["id"])
                + " "
                + _button("delete-dead", "Delete", danger=True, id=d["id"])
            ),
        ]
        for d in view["dead_letters"]["latest"]
    ]
    count = fig("dead_letters.count", view["dead_letters"]["count"])
    return f"<p>{count} not requeued; the latest:</p>" + _table(
        ["Failed at", "Queue", "Actor", "#Retries", "Error", ""],
        rows,
        empty="No dead letters.",
    )


def _outbox(view: dict[str, Any]) -> str:
    o = view["outbox"]
    return (
        f"<p>{fig('outbox.pending', o['pending'])} pending, the oldest "
        f"{fig('outbox.oldest_pending_age_seconds', o['oldest_pending_age_seconds'])} s old; "
        f"{fig('outbox.failed', o['failed'])} failed; "
        f"{fig('outbox.held_for_suspended', o['held_for_suspended'])} held for suspended"
        " tenants (not backlog: they flow once reactivated).</p>"
    )


def _scheduler(view: dict[str, Any]) -> str:
    s = view["scheduler"]
    status = "ok" if s["healthy"] else "bad"
    age = fig("scheduler.heartbeat_age_seconds", s["heartbeat_age_seconds"], digits=2)
    parts = [f'<p>Heartbeat <span class="{status}">{age} s</span> ago']
    if not view["scope"]["operator"]:
        return parts[0] + ".</p>"
    leader = s["leader"]
    if leader:
        parts.append(
            f"; leader {fig('scheduler.leader', leader['instance_id'])} "
            f"({esc(leader['hostname'])}, pid {esc(leader['pid'])}) since "
            f"{esc(leader['leader_since'][:19].replace('T', ' '))}.</p>"
        )
    else:
        parts.append('; <span class="bad">no scheduler ever led</span>.</p>')
    rows = []
    for job in s["jobs"]:
        run = job["last_run"] or {}
        outcome = run.get("outcome")
        cls = {"ok": "ok", "failed": "bad", "skipped": "warn"}.get(outcome or "", "mute")
        rows.append(
            [
                td(esc(job["job"])),
                td(esc(job["trigger"] or "")),
                td(esc((run.get("finished_at") or "never")[:19].replace("T", " "))),
                td(fig(f"scheduler.job.{job['job']}.outcome", outcome, cls=cls)),
                td(
                    fig(f"scheduler.job.{job['job']}.duration_ms", run.get("duration_ms")), num=True
                ),
                td(esc(run.get("error") or run.get("result") or ""), wrap=True),
                td(esc((run.get("next_run_at") or "")[:19].replace("T", " "))),
            ]
        )
    return "".join(parts) + _table(
        ["Job", "Trigger", "Last run", "Outcome", "#ms", "Result or error", "Next run"],
        rows,
        empty="No job has been scheduled yet.",
    )


def live_fragment(view: dict[str, Any]) -> str:
    """The part of the page the refresh replaces: every figure."""
    operator = view["scope"]["operator"]
    sections = [
        ("summary", "Now", _cards(view)),
        ("dashboard", "Processed and failed", _chart(view["series"])),
        ("busy", "Busy", _busy(view)),
    ]
    if operator:
        sections.append(("processes", "Processes", _processes(view)))
    sections += [
        ("queues", "Queues", _queues(view)),
        ("actors", "Actors", _actors(view)),
        ("tenants", "Tenants per queue", _tenants(view)),
        ("delayed", "Retries and scheduled", _delayed(view)),
        ("dead-letters", "Dead letters", _dead_letters(view)),
        ("outbox", "Outbox", _outbox(view)),
        ("scheduler", "Scheduler", _scheduler(view)),
    ]
    stamp = fig("generated_at", view["generated_at"])
    return f'<p class="mute">As of {stamp}.</p>' + "".join(
        f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'
        for sid, title, body in sections
    )


def _document(title: str, body: str, *, header: str = "", script: bool = False) -> str:
    js = f"<script>{_SCRIPT}</script>" if script else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"{header}<main>{body}</main>{js}</body></html>"
    )


def page(view: dict[str, Any], *, minutes: int, notice: str | None = None) -> str:
    scope = view["scope"]
    who = "platform" if scope["operator"] else f"tenant {scope['tenant_id']}"
    options = "".join(
        f'<option value="{m}"{" selected" if m == minutes else ""}>{m} min</option>'
        for m in WINDOWS
    )
    header = (
        "<header><h1>OmniStream ops</h1>"
        f'<span class="mute">{esc(who)}</span><span class="grow"></span>'
        f'<span id="state" class="ok">live</span>'
        f'<form class="inline" method="get" action="/ops"><select name="minutes" '
        f'onchange="this.form.submit()">{options}</select>'
        f"<noscript><button>Show</button></noscript></form>"
        '<form class="inline" method="post" action="/ops/logout"><button>Log out</button></form>'
        "</header>"
    )
    notice_html = f'<p class="notice">{esc(notice)}</p>' if notice else ""
    noscript = f'<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS * 2}"></noscript>'
    body = f'{notice_html}{noscript}<div id="live">{live_fragment(view)}</div>'
    return _document("OmniStream ops", body, header=header, script=True)


def login_page(message: str | None = None) -> str:
    error = f'<p class="notice">{esc(message)}</p>' if message else ""
    body = (
        f"<section><h2>Operators' console</h2>{error}"
        '<form method="post" action="/ops/login"><p>Platform operators: the METRICS_TOKEN.</p>'
        '<p><input type="password" name="token" autocomplete="off" placeholder="operator token" '
        'aria-label="operator token"> <button>Open</button></p></form>'
        '<form method="post" action="/ops/login"><p>Workspace admins: your login.</p>'
        '<p><input type="email" name="email" placeholder="email" aria-label="email"> '
        '<input type="password" name="password" placeholder="password" aria-label="password"> '
        '<input type="text" name="tenant" placeholder="workspace (if several)" '
        'aria-label="workspace"> <button>Log in</button></p></form></section>'
    )
    return _document("OmniStream ops: log in", body)


def error_page(status: str, message: str) -> str:
    body = (
        f'<section><h2>{esc(status)}</h2><p class="bad">{esc(message)}</p>'
        '<p><a href="/ops">Try again</a></p></section>'
    )
    return _document(f"OmniStream ops: {status}", body)


def dead_letter_page(view: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><th>{esc(k)}</th><td class="wrap">{esc(view[k])}</td></tr>'
        for k in (
            "id",
            "message_id",
            "queue",
            "actor",
            "tenant_id",
            "retries",
            "failed_at",
            "requeued_at",
        )
    )
    arguments = json.dumps({"args": view["args"], "kwargs": view["kwargs"]}, indent=2)
    body = (
        f'<section><h2>Dead letter</h2><p><a href="/ops">← console</a></p>'
        f'<div class="scroll"><table>{rows}</table></div>'
        f"<h2>Arguments</h2><pre>{esc(arguments)}</pre>"
        f"<h2>Options</h2><pre>{esc(json.dumps(view['options'], indent=2))}</pre>"
        f"<h2>Error</h2><pre>{esc(view['error'])}</pre>"
        + (
            ""
            if view["requeued_at"]
            else _button("requeue", "Re-enqueue", id=view["id"])
            + " "
            + _button("delete-dead", "Delete", danger=True, id=view["id"])
        )
        + "</section>"
    )
    return _document("OmniStream ops: dead letter", body)


def requeue_consent_page(dead_letter_id: str, *, reason: str, why: str) -> str:
    """A requeue refused because the customer may already have the message (``reason``,
    ``why``): the operator may send it anyway, with a button that says what it risks."""
    body = (
        f"<section><h2>409 Not re-enqueued</h2>"
        f'<p class="bad">{esc(why)}.</p>'
        f'<p class="mute">Reason: {esc(reason)}.</p>'
        + _button(
            "requeue",
            "Re-enqueue anyway \u2014 the customer may get it twice",
            danger=True,
            id=dead_letter_id,
            accept_duplicate="true",
        )
        + f' <a href="/ops/dead-letters/{esc(dead_letter_id)}">Inspect</a>'
        ' <a href="/ops">Back to the console</a></section>'
    )
    return _document("OmniStream ops: send it twice?", body)


def quote_notice(text: str) -> str:
    return quote(text, safe="")
