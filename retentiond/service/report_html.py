"""The compliance report as one self-contained HTML page (``audit report --out FILE``).

``render_html(report)`` is a pure function: the page has its CSS inline, its chart as
inline SVG, no script, font, image or link to anything outside itself, so it opens
offline and can be archived or mailed as one file. A Content-Security-Policy meta tag
forbids scripts and every external load, as a second line of defence: every text that
comes from data (purpose names, ids, agents, reasons, paths) goes through ``html.escape``.

Each section ends with the rule it serves, quoted from the texts of ``core.sources``.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from retentiond.core.sources import cite
from retentiond.service.report import (
    DeletionDay,
    PurposeRow,
    Report,
    ResidencyRow,
    SamplingRow,
)

MAX_ROWS = 1000  # rows shown per long table (notes findings, quarantine, agents); all in --json
MAX_DAY_BARS = 62  # more days than this: one bar per week
MAX_WEEK_BARS = 104  # more weeks than this: one bar per month
MAX_X_LABELS = 12
MAX_BAR_WIDTH = 40.0  # SVG units (the chart is 960 wide): a few bars stay bars

# fixed colours for the known deletion reasons (colour-blind-safe Tableau 10 subset), then
# the rest of the palette for reasons the code does not know yet
REASON_COLOURS = {
    "retention-expired": "#4e79a7",
    "objection": "#e15759",
    "erasure-request": "#f28e2b",
    "sampling-cap": "#76b7b2",
    "quarantine-expired": "#b07aa1",
}
EXTRA_COLOURS = ("#59a14f", "#edc948", "#9c755f", "#ff9da7", "#bab0ac")

# CNIL rules each section serves: (quote, source). Quotes are verbatim from the texts of
# core/sources.py (docs/sources.md), cited by author, title and date.
CITE_RETENTION = (
    "La Cnil préconise la conservation des enregistrements 6 mois, 5 ans dans le cas d’une "
    "preuve bancaire.", cite("003_fac5e16efc5eae4d.txt"))
CITE_LIMITED = (
    "De plus, les enregistrements doivent être conservés pour une période limitée.",
    cite("000_822542ba0a462e32.txt"))
CITE_MINIMUM = (
    "Cela exige, notamment, de garantir que la durée de conservation des données soit "
    "limitée au strict minimum.",
    cite("002_4fefc22a382397cf.txt", "citant le considérant 39 du RGPD"))
CITE_SAMPLING = (
    "Être ponctuels, cela signifie que le recours à ces procédés ne peut être ni "
    "automatique ni systématique.", cite("002_4fefc22a382397cf.txt"))
CITE_SAMPLING_30 = (
    "En accord avec les exigences de la Cnil, Webhelp enregistre par défaut 30% des "
    "conversations", cite("003_fac5e16efc5eae4d.txt"))
CITE_MEDIA = (
    "le couplage des enregistrements téléphoniques avec l’image (capture d’écran ou vidéo) "
    "des actions de l’employé est disproportionné lorsqu’il est utilisé pour d’autres "
    "finalités que la formation", cite("002_4fefc22a382397cf.txt"))
CITE_PURPOSE = (
    "il doit répondre à des besoins préalablement définis (formation ou évaluation des "
    "personnes par exemple)", cite("000_822542ba0a462e32.txt"))
CITE_NOTES = (
    "Vos agents doivent rédiger les commentaires clients en toute objectivité, sans propos "
    "excessifs ou insultants.", cite("004_d3ec3d87acc4f880.txt"))
CITE_SENSITIVE = (
    "Il s’agit par exemple des informations relatives à la santé, aux opinions politiques, "
    "à la vie sexuelle, aux infractions ou condamnations des clients.",
    cite("004_d3ec3d87acc4f880.txt"))
CITE_RESIDENCY = (
    "Si par ailleurs, l’infogérant n’est pas situé sur le territoire national ou sur celui "
    "de l’Union européenne, la problématique d’un possible flux transfrontière de données "
    "à caractère personnel, nécessitera aussi une attention toute particulière.",
    cite("001_aef597fe755596ca.txt"))
CITE_PROCESSOR = (
    "le sous-traitant doit présenter des garanties suffisantes pour assurer la "
    "confidentialité des données auxquels il accède", cite("000_822542ba0a462e32.txt"))
CITE_SECURITY = (
    "vérifier que l’infogérant présente les garanties suffisantes pour assurer la mise en "
    "œuvre des mesures de sécurité et de confidentialité nécessaires à la préservation des "
    "données collectées", cite("001_aef597fe755596ca.txt"))
CITE_TRACE = (
    "qui a eu accès à quoi, qui a modifié quoi, quand etc.",
    cite("000_822542ba0a462e32.txt"))
CITE_OBJECTION = (
    "l’enregistrement peut être accessible aux consommateurs et aux conseillers qui le "
    "demandent et refusé par le client s’il le souhaite.", cite("003_fac5e16efc5eae4d.txt"))

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#f6f7f9; --ok:#1e7a3c;
  --warn:#a15c00; --bad:#b3261e; --accent:#2f5d8a; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, sans-serif; color:var(--fg); background:#fff; }
header { background:var(--fg); color:#fff; padding:20px 32px; }
header h1 { margin:0 0 6px; font-size:22px; font-weight:600; }
header .meta { color:#c9cfdb; font-size:13px; }
header .meta code { color:#fff; }
main { padding:16px 32px 40px; max-width:1400px; }
nav { margin:8px 0 16px; font-size:13px; }
nav a { color:var(--accent); margin-right:12px; text-decoration:none; }
h2 { font-size:18px; margin:32px 0 8px; padding-bottom:4px; border-bottom:2px solid var(--line); }
h3 { font-size:15px; margin:18px 0 6px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size:12.5px; overflow-wrap:anywhere; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(160px, 1fr)); gap:10px;
  margin:16px 0; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; background:var(--bg); }
.card .value { font-size:24px; font-weight:600; font-variant-numeric:tabular-nums; }
.card .label { color:var(--muted); font-size:12px; }
.card.warn { border-color:#e7b66b; background:#fff7e8; }
.card.bad { border-color:#e8a19c; background:#fdeeed; }
.card.bad .value { color:var(--bad); }
.card.ok .value { color:var(--ok); }
.alerts { border:1px solid #e7b66b; background:#fff7e8; border-radius:6px; padding:8px 14px; }
.alerts.none { border-color:#9fd1ae; background:#eef8f1; }
.alerts ul { margin:4px 0; padding-left:20px; }
.alerts .bad { color:var(--bad); }
table { border-collapse:collapse; margin:6px 0 4px; font-size:13px; }
th, td { border:1px solid var(--line); padding:4px 8px; vertical-align:top; text-align:left; }
th { background:var(--bg); font-weight:600; }
.wide { overflow-x:auto; max-width:100%; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.t { white-space:nowrap; }
tr.total td { font-weight:600; background:var(--bg); }
td.hot { color:var(--bad); font-weight:600; }
td.warm { color:var(--warn); font-weight:600; }
.tag { display:inline-block; padding:0 6px; border-radius:9px; font-size:11.5px;
  background:#e9edf3; margin:1px 2px 1px 0; white-space:nowrap; }
.tag.bad { background:#fdeeed; color:var(--bad); }
.tag.ok { background:#eef8f1; color:var(--ok); }
.empty { color:var(--muted); font-style:italic; }
.rule { color:var(--muted); font-size:12px; margin:6px 0 0; max-width:900px; }
.rule q { font-style:italic; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:3px 16px; margin:6px 0; }
dl.kv dt { color:var(--muted); }
dl.kv dd { margin:0; }
.chart { max-width:1000px; }
.chart svg { width:100%; height:auto; display:block; }
.chart text { font-family:system-ui, sans-serif; }
footer { color:var(--muted); font-size:12px; padding:12px 32px 24px;
  border-top:1px solid var(--line); }
@media print { header { background:#fff; color:#000; border-bottom:2px solid #000; }
  header .meta, header .meta code { color:#000; } nav { display:none; } }
"""


def e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_int(n: int | None) -> str:
    return "–" if n is None else f"{n:,}".replace(",", "\u202f")


def fmt_bytes(n: int) -> str:
    """Binary units with one decimal: 1536 -> 1.5 KiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_time(dt: datetime | None, *, utc: bool = True) -> str:
    """``2026-11-23 09:00 UTC``; in tables without the zone (their caption says UTC)."""
    if dt is None:
        return "–"
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M" + (" UTC" if utc else ""))


def fmt_ratio(r: float | None) -> str:
    return "–" if r is None else f"{r * 100:.1f}\u00a0%"


def _cite(*quotes: tuple[str, str], extra: str = "") -> str:
    parts = [f'<q lang="fr">{e(q)}</q> ({e(src)})' for q, src in quotes]
    return f'<p class="rule">{"; ".join(parts)}{e(extra)}</p>'


def _td_n(n: int | None, *, col: str, hot: bool = False, warm: bool = False) -> str:
    cls = "n hot" if hot and n else "n warm" if warm and n else "n"
    return f'<td class="{cls}" data-col="{e(col)}">{fmt_int(n)}</td>'


def _td(text: str, *, col: str, cls: str = "") -> str:
    """A cell of already-escaped HTML."""
    c = f' class="{cls}"' if cls else ""
    return f'<td{c} data-col="{e(col)}">{text}</td>'


def _table(headers: Sequence[tuple[str, bool]], rows: Iterable[str], *, cls: str = "") -> str:
    """``headers``: (label, numeric); ``rows``: ready ``<tr>...</tr>`` strings."""
    head = "".join(f'<th class="n">{e(h)}</th>' if num else f"<th>{e(h)}</th>"
                   for h, num in headers)
    c = f' class="{cls}"' if cls else ""
    return (f'<div class="wide"><table{c}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _more(total: int, shown: int) -> str:
    if total <= shown:
        return ""
    return (f'<p class="empty">… and {fmt_int(total - shown)} more (all of them are in '
            "<code>audit report --json</code>).</p>")


# -- the deletions chart ---------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """One bar of the chart: deletions from ``start`` (a day, a Monday or a 1st)."""

    start: date
    counts: tuple[tuple[str, int], ...]  # (reason, count) in stacking order

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


def reason_order(reasons: Iterable[str]) -> list[str]:
    """Known reasons in a fixed order, then the others alphabetically."""
    known = list(REASON_COLOURS)
    return sorted(set(reasons), key=lambda r: (known.index(r) if r in known else len(known), r))


def reason_colour(reason: str, order: Sequence[str]) -> str:
    if reason in REASON_COLOURS:
        return REASON_COLOURS[reason]
    unknown = [r for r in order if r not in REASON_COLOURS]
    return EXTRA_COLOURS[unknown.index(reason) % len(EXTRA_COLOURS)] if reason in unknown \
        else EXTRA_COLOURS[0]


def _bucket_start(d: date, granularity: str) -> date:
    if granularity == "week":
        return d - timedelta(days=d.weekday())
    if granularity == "month":
        return d.replace(day=1)
    return d


def _next_start(d: date, granularity: str) -> date:
    if granularity == "week":
        return d + timedelta(days=7)
    if granularity == "month":
        return date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return d + timedelta(days=1)


def chart_buckets(deletions: Sequence[DeletionDay]) -> tuple[str, list[Bucket]]:
    """(granularity, bars): one bar per day over the whole range (days without deletions
    included, so time is linear), per week (Monday) when the range is longer than
    ``MAX_DAY_BARS`` days, per month when longer than ``MAX_WEEK_BARS`` weeks."""
    by_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in deletions:
        try:
            day = date.fromisoformat(d.day)
        except ValueError:
            continue  # not a date: left out of the chart, still in the tables and JSON
        by_day[day][d.reason] += d.count
    if not by_day:
        return "day", []
    first, last = min(by_day), max(by_day)
    span = (last - first).days + 1
    granularity = ("day" if span <= MAX_DAY_BARS
                   else "week" if span <= MAX_WEEK_BARS * 7 else "month")
    sums: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day, counts in by_day.items():
        for reason, n in counts.items():
            sums[_bucket_start(day, granularity)][reason] += n
    order = reason_order(r for c in by_day.values() for r in c)
    out: list[Bucket] = []
    start, end = _bucket_start(first, granularity), _bucket_start(last, granularity)
    while start <= end:
        counts = sums.get(start, {})
        out.append(Bucket(start, tuple((r, counts[r]) for r in order if counts.get(r))))
        start = _next_start(start, granularity)
    return granularity, out


def nice_ceiling(n: int) -> tuple[int, int]:
    """(axis maximum, tick step) for a largest bar of ``n``: steps of 1, 2 or 5 x 10^k,
    at most 5 ticks above zero."""
    if n <= 0:
        return 1, 1
    raw = n / 5
    power = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    for mult in (1, 2, 5, 10):
        step = mult * power
        if step * 5 >= n:
            return step * math.ceil(n / step), step
    raise AssertionError("unreachable")  # pragma: no cover


def _label(start: date, granularity: str) -> str:
    return start.strftime("%Y-%m") if granularity == "month" else start.strftime("%m-%d")


def deletions_svg(deletions: Sequence[DeletionDay]) -> str:
    """The stacked bar chart of deletions by reason over time, as inline SVG."""
    granularity, buckets = chart_buckets(deletions)
    if not buckets:
        return '<p class="empty">No recording has been deleted yet.</p>'
    order = reason_order(r for b in buckets for r, _ in b.counts)
    width, height = 960, 320
    left, right, top, bottom = 56, 16, 40, 58
    pw, ph = width - left - right, height - top - bottom
    ymax, step = nice_ceiling(max(b.total for b in buckets))
    slot = pw / len(buckets)
    bar = min(MAX_BAR_WIDTH, max(1.0, slot * 0.72))
    per = {"day": "day", "week": "week (from Monday)", "month": "month"}[granularity]
    title = (f"Recordings deleted per {per}, by reason, "
             f"{buckets[0].start.isoformat()} to {buckets[-1].start.isoformat()} (UTC)")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title" data-granularity="{granularity}" '
        f'data-bars="{len(buckets)}">',
        f'<title id="chart-title">{e(title)}</title>',
    ]
    # legend, one row at the top
    x = left
    for reason in order:
        parts.append(f'<g class="legend-item" data-reason="{e(reason)}">'
                     f'<rect x="{x}" y="10" width="12" height="12" '
                     f'fill="{reason_colour(reason, order)}"/>'
                     f'<text x="{x + 16}" y="20" font-size="12" fill="#1d2330">{e(reason)}</text>'
                     "</g>")
        x += 16 + 7 * len(reason) + 18
    # y axis: grid lines and tick labels
    for tick in range(0, ymax + 1, step):
        y = top + ph - ph * tick / ymax
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{"#9aa3b2" if tick == 0 else "#e3e6ec"}" stroke-width="1"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
                     f'fill="#5b6475">{tick}</text>')
    parts.append(f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" '
                 'font-size="12" text-anchor="middle" fill="#5b6475">recordings deleted</text>')
    # bars
    every = max(1, math.ceil(len(buckets) / MAX_X_LABELS))
    for i, b in enumerate(buckets):
        bx = left + i * slot + (slot - bar) / 2
        detail = ", ".join(f"{r} {n}" for r, n in b.counts)
        tip = f"{b.start.isoformat()}: {b.total} deleted" + (f" ({detail})" if detail else "")
        parts.append(f'<g class="bar" data-start="{b.start.isoformat()}" '
                     f'data-total="{b.total}"><title>{e(tip)}</title>')
        y = top + ph
        for reason, n in b.counts:
            h = ph * n / ymax
            y -= h
            parts.append(f'<rect x="{bx:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{reason_colour(reason, order)}" data-reason="{e(reason)}" '
                         f'data-count="{n}"/>')
        parts.append("</g>")
        if i % every == 0:
            cx = left + i * slot + slot / 2
            parts.append(f'<text x="{cx:.1f}" y="{top + ph + 16}" font-size="11" '
                         f'text-anchor="middle" fill="#5b6475">'
                         f"{e(_label(b.start, granularity))}</text>")
    axis = {"day": "UTC day (month-day)", "week": "week starting (month-day, UTC)",
            "month": "month (UTC)"}[granularity]
    y0, y1 = buckets[0].start.year, buckets[-1].start.year
    years = str(y0) if y0 == y1 else f"{y0}–{y1}"
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 12}" font-size="12" '
                 f'text-anchor="middle" fill="#5b6475">{e(axis)}, {years}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- sections --------------------------------------------------------------------------


def _cards(r: Report) -> str:
    def card(key: str, value: str, label: str, state: str = "") -> str:
        cls = f"card {state}".strip()
        return (f'<div class="{cls}" data-figure="{e(key)}"><div class="value">{value}</div>'
                f'<div class="label">{e(label)}</div></div>')

    proof_ok, audit_ok = r.proof_log.verified, r.audit_log.verified
    return '<div class="cards">' + "".join((
        card("live", fmt_int(r.live), f"live recordings ({fmt_bytes(r.live_bytes)})"),
        card("overdue", fmt_int(r.overdue), "overdue (due, not deleted)",
             "bad" if r.overdue else "ok"),
        card("held", fmt_int(r.held), "under legal hold"),
        card("held-overdue", fmt_int(r.held_overdue), "held past their date",
             "warn" if r.held_overdue else ""),
        card("quarantined", fmt_int(r.quarantine.count), "in quarantine",
             "warn" if r.quarantine.count else ""),
        card("notes-findings", fmt_int(len(r.notes_findings)), "recordings with notes findings",
             "warn" if r.notes_findings else ""),
        card("deleted", fmt_int(r.deleted), "deleted with proof"),
        card("proof-log", fmt_int(r.proof_log.entries if proof_ok
                                  else r.proof_log.checkpoint_size),
             "proof-log entries, " + ("verified" if proof_ok else "DOES NOT VERIFY"),
             "ok" if proof_ok else "bad"),
        card("audit-log", fmt_int(r.audit_log.entries), "audit-log entries, "
             + ("chain verified" if audit_ok else "CHAIN BROKEN"), "ok" if audit_ok else "bad"),
        card("store-findings", fmt_int(len(r.store_findings)), "store findings",
             "bad" if r.store_findings else ""),
        card("standing-objections", fmt_int(r.standing_objections),
             "standing objections (GDPR Art. 21): callers whose later recordings go"),
    )) + "</div>"


def _alerts(r: Report) -> str:
    if not r.warnings:
        return ('<div class="alerts none" id="warnings"><strong>No warnings.</strong> '
                "Nothing is overdue, held past its date, quarantined or flagged; both logs "
                "verify.</div>")
    items = "".join(
        f'<li data-code="{e(w.code)}"><strong>{e(w.code)}</strong> ({fmt_int(w.count)}): '
        f"{e(w.message)}</li>" for w in r.warnings)
    return (f'<div class="alerts" id="warnings"><strong>{len(r.warnings)} warning(s)</strong> '
            f"(exit code {r.exit_code})<ul>{items}</ul></div>")


def _purpose_tr(p: PurposeRow) -> str:
    name = e(p.purpose) + ("" if p.in_policy else ' <span class="tag bad">not in policy</span>')
    cap = "–" if p.max_sample_ratio is None else fmt_ratio(p.max_sample_ratio)
    return (f'<tr data-purpose="{e(p.purpose)}">'
            + _td(name, col="purpose")
            + _td(e(p.legal_basis or "–"), col="legal_basis")
            + _td(e(p.retention or "–") + (f" (min {e(p.min_retention)})"
                                            if p.min_retention else ""), col="retention")
            + _td_n(p.count, col="count")
            + f'<td class="n" data-col="bytes" title="{p.bytes} bytes">{fmt_bytes(p.bytes)}</td>'
            + _td(fmt_time(p.oldest_recorded_at, utc=False), col="oldest", cls="t")
            + _td(fmt_time(p.next_due, utc=False), col="next_due", cls="t")
            + _td_n(p.overdue, col="overdue", hot=True)
            + _td_n(p.held, col="held")
            + _td_n(p.held_overdue, col="held_overdue", warm=True)
            + _td_n(p.deleted, col="deleted")
            + _td(cap, col="cap", cls="n")
            + _td(fmt_ratio(p.kept_ratio), col="kept_ratio", cls="n")
            + "</tr>")


def _purposes(r: Report) -> str:
    rows = [_purpose_tr(p) for p in r.purposes]
    ps = r.purposes
    rows.append(
        '<tr class="total" data-purpose="">' + _td("all purposes", col="purpose")
        + _td("", col="legal_basis") + _td("", col="retention")
        + _td_n(sum(p.count for p in ps), col="count")
        + _td(fmt_bytes(sum(p.bytes for p in ps)), col="bytes", cls="n")
        + _td(fmt_time(min((p.oldest_recorded_at for p in ps if p.oldest_recorded_at),
                           default=None), utc=False), col="oldest", cls="t")
        + _td(fmt_time(min((p.next_due for p in ps if p.next_due), default=None), utc=False),
              col="next_due", cls="t")
        + _td_n(sum(p.overdue for p in ps), col="overdue", hot=True)
        + _td_n(sum(p.held for p in ps), col="held")
        + _td_n(sum(p.held_overdue for p in ps), col="held_overdue", warm=True)
        + _td_n(sum(p.deleted for p in ps), col="deleted")
        + _td("", col="cap") + _td("", col="kept_ratio") + "</tr>")
    table = _table([("Purpose", False), ("Legal basis", False), ("Retention", False),
                    ("Live", True), ("Size", True), ("Oldest recorded (UTC)", False),
                    ("Next due (UTC)", False), ("Overdue", True), ("Held", True),
                    ("Held overdue", True), ("Deleted", True), ("Sample cap", True),
                    ("Kept ratio", True)], rows, cls="purposes")
    return (
        '<section id="purposes"><h2>Recordings per purpose</h2>' + table
        + '<p class="rule">Live: kept now (quarantine apart, below). Overdue: past the '
        "deletion date and not deleted yet (the next sweep deletes them). Held: kept by a "
        "legal hold; held overdue: past their date, kept only by the hold. Kept ratio: share "
        "of the calls ingested for the purpose that the sampling cap kept. Figures come from "
        "the same decision function as <code>plan</code> and <code>sweep</code>.</p>"
        + _cite(CITE_RETENTION, CITE_LIMITED, CITE_PURPOSE) + "</section>")


def _deletions(r: Report) -> str:
    by_reason = r.deletions_by_reason()
    per: dict[tuple[str, str], int] = defaultdict(int)
    for d in r.deletions:
        per[(d.purpose, d.reason)] += d.count
    rows = [f'<tr data-purpose="{e(p)}" data-reason="{e(reason)}">' + _td(e(p), col="purpose")
            + _td(e(reason), col="reason") + _td_n(n, col="count") + "</tr>"
            for (p, reason), n in sorted(per.items())]
    table = (_table([("Purpose", False), ("Reason", False), ("Deleted", True)], rows)
             if rows else "")
    totals = ", ".join(f"{e(k)}: {fmt_int(v)}" for k, v in by_reason.items())
    return (
        '<section id="deletions"><h2>Deletions by reason over time</h2>'
        f'<div class="chart">{deletions_svg(r.deletions)}</div>'
        + (f"<p>Total {fmt_int(r.deleted)} ({totals}).</p>" if by_reason else "") + table
        + '<p class="rule">Every deletion here has a signed record in the deletion-proof log. '
        "Reasons: retention-expired (the purpose's retention ran out), objection (the caller "
        "refused the recording), erasure-request (GDPR Art. 17), sampling-cap (outside the "
        "share of calls the purpose may keep), quarantine-expired.</p>"
        + _cite(CITE_MINIMUM, CITE_OBJECTION) + "</section>")


def _sampling_tr(s: SamplingRow, *, with_agent: bool) -> str:
    over = s.cap is not None and s.kept_ratio is not None and s.kept_ratio > s.cap
    agent = ("" if not with_agent else
             _td(e(s.agent) if s.agent is not None else '<span class="empty">no agent</span>',
                 col="agent"))
    return (f'<tr data-purpose="{e(s.purpose)}"'
            + (f' data-agent="{e(s.agent or "")}"' if with_agent else "") + ">"
            + _td(e(s.purpose), col="purpose") + agent
            + _td_n(s.ingested, col="ingested") + _td_n(s.over_cap, col="over_cap")
            + _td_n(s.kept, col="kept")
            + _td(fmt_ratio(s.kept_ratio), col="kept_ratio", cls="n warm" if over else "n")
            + _td("–" if s.cap is None else fmt_ratio(s.cap), col="cap", cls="n") + "</tr>")


def _sampling(r: Report) -> str:
    head = [("Purpose", False), ("Ingested", True), ("Over the cap", True), ("Kept", True),
            ("Kept ratio", True), ("Cap", True)]
    if not r.sampling_by_purpose:
        body = '<p class="empty">No call ingested yet.</p>'
    else:
        agents = r.sampling_by_agent[:MAX_ROWS]
        body = (_table(head, (_sampling_tr(s, with_agent=False)
                              for s in r.sampling_by_purpose), cls="sampling-purpose")
                + "<h3>Per agent</h3>"
                + _table([head[0], ("Agent", False), *head[1:]],
                         (_sampling_tr(s, with_agent=True) for s in agents),
                         cls="sampling-agent")
                + _more(len(r.sampling_by_agent), len(agents)))
    return ('<section id="sampling"><h2>Sampling</h2>' + body
            + '<p class="rule">Calls ingested and calls the cap deleted, counted as they '
            "happen and kept after the deletions (for the last 12 months of ingests: the "
            "tally names agents), so the ratio is the real share of calls kept. Each call is "
            "drawn by a keyed hash of its call id, so on "
            "few calls the ratio may exceed the cap (shown in orange); on many calls it stays "
            "close to it. A purpose without a cap keeps every call it is given: a kept ratio "
            "of 100&nbsp;% for an agent shows systematic recording.</p>"
            + _cite(CITE_SAMPLING, CITE_SAMPLING_30) + "</section>")


def _quarantine(r: Report) -> str:
    q = r.quarantine
    if not q.count:
        body = '<p class="empty">Nothing in quarantine.</p>'
    else:
        facts = (f'<dl class="kv"><dt>Recordings</dt><dd data-figure="quarantine-count">'
                 f"{fmt_int(q.count)}</dd><dt>Size</dt><dd>{fmt_bytes(q.bytes)}</dd>"
                 f"<dt>Oldest ingested</dt><dd>{fmt_time(q.oldest_ingested_at)}</dd>"
                 f"<dt>Next deletion</dt><dd>{fmt_time(q.next_due)}</dd>"
                 f"<dt>Overdue</dt><dd>{fmt_int(q.overdue)}</dd>"
                 f"<dt>Held</dt><dd>{fmt_int(q.held)}</dd>"
                 f"<dt>Kept for review</dt><dd>{e(q.retention)} from ingest</dd></dl>")
        reasons = _table([("Reason", False), ("Recordings", True), ("Size", True)], (
            "<tr>" + _td(e(x.reason), col="reason") + _td_n(x.count, col="count")
            + _td(fmt_bytes(x.bytes), col="bytes", cls="n") + "</tr>" for x in q.reasons))
        items = q.items[:MAX_ROWS]
        listing = _table(
            [("Recording", False), ("Reason", False), ("Declared purpose", False),
             ("Media", False), ("Ingested (UTC)", False), ("Deleted after (UTC)", False),
             ("Held", False)],
            (f'<tr data-id="{e(i.id)}">' + _td(f"<code>{e(i.id)}</code>", col="id")
             + _td(e(i.reason), col="reason") + _td(e(i.declared_purpose or "–"), col="declared")
             + _td(e(i.media), col="media")
             + _td(fmt_time(i.ingested_at, utc=False), col="ingested", cls="t")
             + _td(fmt_time(i.due, utc=False), col="due", cls="t")
             + _td("yes" if i.held else "no", col="held") + "</tr>"
             for i in items))
        body = facts + reasons + "<h3>Recordings</h3>" + listing + _more(len(q.items), len(items))
    return ('<section id="quarantine"><h2>Quarantine</h2>' + body
            + '<p class="rule">A recording that cannot be classified (no or unknown purpose, '
            "malformed sidecar) or whose media its purpose does not allow is kept encrypted "
            "for review, never kept silently under a purpose, and deleted after the quarantine "
            "retention.</p>" + _cite(CITE_MEDIA) + "</section>")


def _notes(r: Report) -> str:
    if not r.notes_findings:
        body = '<p class="empty">No notes finding on live recordings.</p>'
    else:
        per_cat: dict[str, int] = defaultdict(int)
        for n in r.notes_findings:
            for c in n.categories:
                per_cat[c] += 1
        summary = " ".join(f'<span class="tag" data-category="{e(c)}">{e(c)}: {k}</span>'
                           for c, k in sorted(per_cat.items()))
        shown = r.notes_findings[:MAX_ROWS]
        body = (f"<p>{summary}</p>" + _table(
            [("Recording", False), ("Purpose", False), ("Categories", False), ("Rules", False)],
            (f'<tr data-id="{e(n.id)}">' + _td(f"<code>{e(n.id)}</code>", col="id")
             + _td(e(n.purpose), col="purpose")
             + _td(" ".join(f'<span class="tag bad">{e(c)}</span>' for c in n.categories),
                   col="categories")
             + _td(" ".join(f"<code>{e(x)}</code>" for x in n.rules), col="rules") + "</tr>"
             for n in shown), cls="notes") + _more(len(r.notes_findings), len(shown)))
    return ('<section id="notes"><h2>Notes findings</h2>' + body
            + '<p class="rule">The free-text notes of these recordings mention a sensitive '
            "category (GDPR Art. 9 and 10) or an insulting or subjective judgment. The note "
            "text is never shown here: read it with <code>retentiond subject export</code> "
            "(audited) and rewrite it in neutral terms. A lexical check: it flags, a human "
            "decides (docs/notes-lint.md).</p>" + _cite(CITE_NOTES, CITE_SENSITIVE) + "</section>")


RESIDENCY_COLUMNS = ("role", "controller", "processor", "location", "region", "country",
                     "zone", "safeguard", "basis", "inboxes", "default", "declared_by")
RESIDENCY_TITLES = {"store": "Stores", "processor": "Controllers and processors"}


UNDECLARED_WHEN_EMPTY = frozenset({"location", "region", "country", "zone"})


def _cell(value: object, key: str) -> str:
    if value is None or value == "":
        text = "not declared" if key in UNDECLARED_WHEN_EMPTY else "–"
        return f'<span class="empty">{text}</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return e(", ".join(value)) if value else '<span class="empty">–</span>'
    return e(value)


def _residency(rows: Sequence[ResidencyRow]) -> str:
    if not rows:
        body = ('<p class="empty" data-figure="residency-undeclared">Not declared: the '
                "configuration names no store region and no processor.</p>")
    else:
        kinds: dict[str, list[ResidencyRow]] = defaultdict(list)
        for row in rows:
            kinds[str(row.get("kind") or "other")].append(row)
        body = ""
        for kind, group in kinds.items():
            present = {k for r in group for k, _ in r.fields} - {"kind"}
            keys = [k for k in RESIDENCY_COLUMNS if k in present]
            keys += sorted(present - set(keys))
            body += f"<h3>{e(RESIDENCY_TITLES.get(kind, kind.capitalize()))}</h3>" + _table(
                [(k.replace("_", " ").capitalize(), False) for k in keys],
                (f'<tr data-kind="{e(kind)}">'
                 + "".join(_td(_cell(r.get(k), k), col=k) for k in keys) + "</tr>"
                 for r in group), cls=f"residency residency-{e(kind)}")
    return ('<section id="residency"><h2>Residency and processors</h2>' + body
            + '<p class="rule">A store or a processor outside the EU/EEA and the adequacy '
            "list is refused at start-up unless the configuration names its transfer "
            "safeguard (standard contractual clauses, binding corporate rules); docs/"
            "residency.md.</p>" + _cite(CITE_RESIDENCY, CITE_PROCESSOR) + "</section>")


def _yes_no(flag: bool | None, yes: str, no: str, unknown: str = "–") -> str:
    if flag is None:
        return f'<span class="empty">{e(unknown)}</span>'
    cls, text = ("ok", yes) if flag else ("bad", no)
    return f'<span class="tag {cls}">{e(text)}</span>'


def _proof(r: Report) -> str:
    p = r.proof_log
    err = f"<dt>Error</dt><dd class=\"hot\">{e(p.error)}</dd>" if p.error else ""
    return (
        '<section id="proof-log"><h2>Deletion-proof log</h2><dl class="kv">'
        f"<dt>Verified</dt><dd data-figure=\"proof-verified\">"
        f"{_yes_no(p.verified, 'verifies', 'DOES NOT VERIFY')}</dd>{err}"
        f"<dt>Location</dt><dd><code>{e(p.location)}</code></dd>"
        f"<dt>Entries</dt><dd data-figure=\"proof-entries\">{fmt_int(p.entries)}</dd>"
        f"<dt>Checkpoint tree size</dt><dd data-figure=\"proof-tree-size\">"
        f"{fmt_int(p.checkpoint_size)}</dd>"
        f"<dt>Root hash</dt><dd><code data-figure=\"proof-root\">{e(p.root or '–')}</code></dd>"
        f"<dt>Signed by</dt><dd><code>{e(p.key_name)}</code> (key id <code>{e(p.key_id)}</code>)"
        "</dd>"
        f"<dt>Witness</dt><dd>"
        f"{_yes_no(p.consistent_with_witness, 'consistent', 'not consistent', 'none kept')}"
        " with the last checkpoint <code>proof verify</code> recorded</dd>"
        f"<dt>Deletions proven (catalog)</dt><dd>{fmt_int(p.catalog_proofs)}</dd></dl>"
        '<p class="rule">Each deletion is a signed record in an append-only Merkle log (C2SP '
        "tlog-tiles, signed checkpoint); anyone with the public key checks it offline: "
        "<code>retentiond proof verify --log DIR --vkey FILE</code>. It holds no personal "
        "data. GDPR Art. 5(2): the controller must be able to demonstrate compliance.</p>"
        "</section>")


def _audit(r: Report) -> str:
    a = r.audit_log
    err = f"<dt>Error</dt><dd class=\"hot\">{e(a.error)}</dd>" if a.error else ""
    return (
        '<section id="audit-log"><h2>Access audit log</h2><dl class="kv">'
        f"<dt>Verified</dt><dd data-figure=\"audit-verified\">"
        f"{_yes_no(a.verified, 'chain verifies', 'CHAIN BROKEN')}</dd>{err}"
        f"<dt>File</dt><dd><code>{e(a.path)}</code></dd>"
        f"<dt>Entries</dt><dd data-figure=\"audit-entries\">{fmt_int(a.entries)}</dd>"
        f"<dt>Chain head</dt><dd><code data-figure=\"audit-head\">{e(a.head or '–')}</code></dd>"
        "</dl><p class=\"rule\">Every decrypt, export, hold change and erasure is appended "
        "with who, what, when and why; keep a copy of the chain head to detect truncation.</p>"
        + _cite(CITE_TRACE) + "</section>")


def _keys(r: Report) -> str:
    k = r.keys
    if k is None:
        return ""

    def status(kek: str) -> str:
        if kek not in k.files:
            return "FILE MISSING"
        return "in force" if kek == k.current else "kept"

    rows = ("<tr>" + _td(f"<code>{e(kek)}</code>", col="kek")
            + _td_n(n, col="data_keys", hot=kek not in k.files)
            + _td(e(status(kek)), col="status") + "</tr>"
            for kek, n in k.in_use)
    table = _table([("Key-encryption key", False), ("Data keys wrapped", True),
                    ("Status", False)], rows)
    kept = "".join(f"<li><code>{e(kek)}</code> kept: no data key needs it; a catalog backup "
                   "older than the last rotation still opens with it</li>"
                   for kek in k.kept if kek not in dict(k.in_use))
    retired = "".join(f"<li><code>{e(kek)}</code> destroyed {e(fmt_time(at, utc=False))}</li>"
                      for kek, at in k.retired)
    extra = f"<ul>{kept}{retired}</ul>" if kept or retired else ""
    return (
        '<section id="keys"><h2>Keys</h2><dl class="kv">'
        f"<dt>Key-encryption key in force</dt><dd><code data-figure=\"kek-current\">"
        f"{e(k.current)}</code></dd>"
        f"<dt>Created</dt><dd data-figure=\"kek-since\">{e(k.current_since or '–')}</dd>"
        f"<dt>Old keys kept</dt><dd data-figure=\"kek-kept\">{len(k.kept)}</dd>"
        f"<dt>Retired keys</dt><dd data-figure=\"kek-retired\">{len(k.retired)}</dd></dl>"
        f"{table}{extra}"
        '<p class="rule">Each recording has its own data key, kept wrapped by a '
        "key-encryption key apart from the recording; destroying it destroys the recording, "
        "in backups too. <code>retentiond keys rotate --retire</code> re-wraps every data key "
        "under a new key-encryption key and destroys the old ones: catalog backups older "
        "than the rotation then open nothing, once older copies of the key folder are gone "
        "too. GDPR Art. 32: encryption, and its keys managed.</p>"
        + _cite(CITE_SECURITY, CITE_MINIMUM) + "</section>")


def _findings(r: Report) -> str:
    if not r.store_findings:
        body = '<p class="empty">The vault and the catalog agree.</p>'
    else:
        body = _table(
            [("Kind", False), ("Location", False), ("Recording", False), ("Detail", False),
             ("First seen (UTC)", False), ("Last seen (UTC)", False)],
            ("<tr>" + _td(e(f.kind), col="kind") + _td(f"<code>{e(f.location)}</code>",
                                                         col="location")
             + _td(f"<code>{e(f.object_id or '–')}</code>", col="id") + _td(e(f.detail),
                                                                            col="detail")
             + _td(fmt_time(f.first_seen, utc=False), col="first_seen", cls="t")
             + _td(fmt_time(f.last_seen, utc=False), col="last_seen", cls="t") + "</tr>"
             for f in r.store_findings), cls="findings")
    return ('<section id="store-findings"><h2>Store findings</h2>' + body
            + '<p class="rule">Found by the reconciler, which compares the vault with the '
            "catalog: an object without a catalog row or key, a recording whose ciphertext "
            "is missing. Each is an operator's task (docs/operations.md).</p></section>")


def _policy(r: Report) -> str:
    rows = ("<tr>" + _td(e(v.name), col="name") + _td(f"<code>{e(v.sha256)}</code>", col="sha256")
            + _td_n(v.count, col="count")
            + _td("in force" if v.sha256 == r.policy_sha256 else "", col="current") + "</tr>"
            for v in r.policy_versions)
    table = (_table([("Policy at ingest", False), ("SHA-256", False), ("Live recordings", True),
                     ("", False)], rows) if r.policy_versions else "")
    return ('<section id="policy"><h2>Policy</h2><dl class="kv">'
            f"<dt>In force</dt><dd><code>{e(r.policy_name)}</code></dd>"
            f"<dt>SHA-256</dt><dd><code>{e(r.policy_sha256)}</code></dd></dl>{table}"
            '<p class="rule">Every recording stores the name and hash of the policy it was '
            "ingested under; every deletion record names the policy in force.</p></section>")


SECTIONS = (("purposes", "Purposes"), ("deletions", "Deletions"), ("sampling", "Sampling"),
            ("quarantine", "Quarantine"), ("notes", "Notes"), ("residency", "Residency"),
            ("proof-log", "Proof log"), ("audit-log", "Audit log"), ("keys", "Keys"),
            ("store-findings", "Store findings"), ("policy", "Policy"))


def render_html(report: Report) -> str:
    """The whole page, one string (UTF-8 text)."""
    r = report
    nav = "".join(f'<a href="#{s}">{e(label)}</a>' for s, label in SECTIONS
                  if s != "keys" or r.keys is not None)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Compliance report – {e(r.policy_name)} – {e(fmt_time(r.generated_at))}</title>"
        f"<style>{CSS}</style></head><body>"
        "<header><h1>Call recordings: compliance report</h1>"
        f'<div class="meta">Generated <strong data-figure="generated-at">'
        f"{e(fmt_time(r.generated_at))}</strong> by retentiond {e(r.version)} · policy in "
        f'force <code data-figure="policy-name">{e(r.policy_name)}</code> · sha256 '
        f'<code data-figure="policy-sha256">{e(r.policy_sha256)}</code></div></header>'
        f"<main><nav>{nav}</nav>{_alerts(r)}{_cards(r)}"
        f"{_purposes(r)}{_deletions(r)}{_sampling(r)}{_quarantine(r)}{_notes(r)}"
        f"{_residency(r.residency)}{_proof(r)}{_audit(r)}{_keys(r)}{_findings(r)}{_policy(r)}"
        "</main>"
        "<footer>Made by <code>retentiond audit report</code>. The machine-readable form of "
        "the same figures: <code>retentiond audit report --json</code>. Sources of the "
        "quoted rules: named under each quote; what each supports: retentiond's "
        "<code>docs/sources.md</code>.</footer></body></html>\n"
    )
