"""The compliance report from plain data: ``assemble_report`` figures and ``render_html``
(escaping, the chart, empty report, figures present, self-contained page)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from retentiond.core.decide import decide
from retentiond.core.model import QUARANTINE, Recording, State
from retentiond.core.policy import parse_policy
from retentiond.service.report import (
    AuditLogStatus,
    DeletionDay,
    ProofLogStatus,
    Report,
    assemble_report,
)
from retentiond.service.report_html import (
    MAX_ROWS,
    chart_buckets,
    deletions_svg,
    nice_ceiling,
    render_html,
)
from retentiond.service.sweep import PlanItem

POLICY = parse_policy(
    """
version: 1
name: unit-policy
purposes:
  quality:
    legal_basis: legitimate-interests
    retention: P6M
    max_sample_ratio: 0.30
  training:
    legal_basis: legitimate-interests
    retention: P6M
    media: [audio, screen]
quarantine:
  retention: P30D
""",
    filename="unit.yaml",
)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
EVIL = "<script>alert('x')</script>"
EVIL_ATTR = '"><img src=x onerror=alert(1)>'


def rec(rid: str, **kw: object) -> Recording:
    base = Recording(
        id=rid, state=State.ACTIVE, purpose="quality", legal_basis="legitimate-interests",
        media="audio", recorded_at=NOW - timedelta(days=10), ingested_at=NOW - timedelta(days=10),
        policy_name=POLICY.name, policy_sha256=POLICY.sha256, location=f"v/{rid}",
        source=f"/in/{rid}.wav", size=1000, sample_score=0.1,
    )
    return replace(base, **kw)


def plan_of(recs: list[Recording], held: set[str] = frozenset()) -> list[PlanItem]:
    """Exactly what ``Sweeper.plan`` does, on hand-made recordings."""
    return [PlanItem(r, decide(r, policy=POLICY, held=r.id in held, now=NOW)) for r in recs]


def proof_ok(entries: int = 3) -> ProofLogStatus:
    return ProofLogStatus(location="/srv/proofs", origin="example.org/log", key_name="example.org/log",
                          key_id="0a1b2c3d", verified=True, entries=entries,
                          checkpoint_size=entries, root="ROOTHASH=", consistent_with_witness=None,
                          catalog_proofs=entries)


AUDIT_OK = AuditLogStatus("/srv/state/audit.log", verified=True, entries=4, head="ab" * 32)


def build(*, recs: list[Recording] = (), held: set[str] = frozenset(), tally=(), notes=(),
          deletions=(), findings=(), residency=(), proof: ProofLogStatus | None = None,
          audit: AuditLogStatus = AUDIT_OK, counts=()) -> Report:
    return assemble_report(
        now=NOW, policy=POLICY, plan=plan_of(list(recs), set(held)), counts=counts,
        tally=tally, notes=notes, deletions=deletions, findings=findings, residency=residency,
        proof_log=proof or proof_ok(), audit_log=audit)


def full_report() -> Report:
    old = NOW - timedelta(days=400)
    recs = [
        rec("a1", agent="agent-1"),
        rec("a2", recorded_at=old, ingested_at=old),  # overdue
        rec("a3", recorded_at=old, ingested_at=old),  # held past its date
        rec("t1", purpose="training", size=5000),
        rec("u1", purpose="marketing-old"),  # purpose gone from the policy
        rec("q1", state=State.QUARANTINED, purpose=QUARANTINE,
            quarantine_reason="unknown purpose 'x'", declared_purpose="x"),
    ]
    return build(
        recs=recs, held={"a3"},
        tally=[("quality", "agent-1", 6, 2), ("quality", None, 4, 1), ("training", "agent-2", 3, 0)],
        notes=[("t1", "training", "health", "health.fr.condition"),
               ("t1", "training", "subjective", "subjective.fr.tiresome")],
        deletions=[("2026-11-20", "quality", "retention-expired", 2),
                   ("2026-11-20", "quality", "sampling-cap", 1),
                   ("2026-11-23", "training", "objection", 1)],
        counts=[("quality", "deleted", 3, 0), ("training", "deleted", 1, 0)],
        residency=[{"kind": "store", "role": "vault", "location": "/srv/vault", "region": "FR",
                    "country": "FR", "zone": "eea", "safeguard": None}],
    )


# -- assembling ------------------------------------------------------------------------


def test_figures_per_purpose_come_from_the_decisions():
    r = full_report()
    rows = {p.purpose: p for p in r.purposes}
    assert list(rows) == ["quality", "training", "marketing-old"]
    q = rows["quality"]
    assert (q.count, q.bytes, q.overdue, q.held, q.held_overdue, q.deleted) == (3, 3000, 1, 1, 1, 3)
    assert q.oldest_recorded_at == NOW - timedelta(days=400)
    assert q.next_due == datetime(2027, 5, 13, 9, 0, tzinfo=UTC)  # a1: recorded 10 days ago
    assert (q.ingested, q.over_cap) == (10, 3) and q.kept_ratio == pytest.approx(0.7)
    assert rows["training"].count == 1 and rows["training"].deleted == 1
    assert rows["marketing-old"].in_policy is False
    assert r.quarantine.count == 1 and r.quarantine.reasons[0].reason == "unknown purpose 'x'"
    assert r.live == 6 and r.overdue == 1 and r.held_overdue == 1 and r.deleted == 4
    assert r.deletions_by_reason() == {"objection": 1, "retention-expired": 2, "sampling-cap": 1}
    [finding] = r.notes_findings
    assert finding.categories == ("health", "subjective")
    assert {w.code for w in r.warnings} == {"overdue", "held-overdue", "unknown-purpose",
                                             "quarantined", "notes-findings"}
    assert r.exit_code == 1


def test_next_due_is_the_earliest_not_due_recording():
    r = build(recs=[rec("a", recorded_at=NOW - timedelta(days=3)),
                    rec("b", recorded_at=NOW - timedelta(days=5))])
    assert r.purposes[0].next_due == datetime(2027, 5, 18, 9, 0, tzinfo=UTC)


def test_sampling_per_purpose_and_per_agent():
    r = build(tally=[("quality", "a", 10, 7), ("quality", "b", 10, 7), ("quality", None, 2, 0)])
    [p] = r.sampling_by_purpose
    assert (p.ingested, p.over_cap, p.kept, p.cap) == (22, 14, 8, 0.3)
    assert [(s.agent, s.kept) for s in r.sampling_by_agent] == [("a", 3), ("b", 3), (None, 2)]


@pytest.mark.parametrize(
    ("proof", "audit", "code"),
    [
        pytest.param(proof_ok(), AUDIT_OK, 0, id="clean"),
        pytest.param(replace(proof_ok(), verified=False, error="bad sig", error_exit_code=7),
                     AUDIT_OK, 7, id="proof-log-fails"),
        pytest.param(replace(proof_ok(), verified=False, error="unreachable", error_exit_code=5),
                     AUDIT_OK, 5, id="proof-log-unreachable"),
        pytest.param(proof_ok(), AuditLogStatus("/a", False, None, None, "line 3 altered", 8), 8,
                     id="audit-log-fails"),
    ],
)
def test_exit_code(proof, audit, code):
    r = build(recs=[rec("a")], proof=proof, audit=audit)
    assert r.exit_code == code
    assert (code == 0) == (r.warnings == ())


def test_store_findings_and_proof_log_behind_catalog_warn():
    r = build(findings=[("v/x", None, "orphan-object", "no catalog row", NOW, NOW)],
              proof=replace(proof_ok(2), catalog_proofs=5))
    assert {w.code for w in r.warnings} == {"store-findings", "proof-log-behind-catalog"}


def test_json_is_serialisable_and_has_the_documented_keys():
    import json
    doc = full_report().to_json()
    text = json.dumps(doc)
    assert set(doc) == {"report_version", "generated_at", "retentiond_version", "policy",
                        "policy_versions", "summary", "purposes", "sampling", "quarantine",
                        "notes_findings", "residency", "deletions", "proof_log", "audit_log",
                        "keys", "store_findings", "warnings", "exit_code"}
    assert "diab" not in text  # there is no note text to leak in the first place
    assert doc["generated_at"] == "2026-11-23T09:00:00+00:00"


# -- rendering -------------------------------------------------------------------------


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Tags:
    t = Tags()
    t.feed(page)
    return t


def test_hostile_names_and_ids_are_escaped_everywhere():
    hostile = build(
        recs=[rec(EVIL, purpose=EVIL, agent=EVIL_ATTR),
              rec("q" + EVIL_ATTR, state=State.QUARANTINED, purpose=QUARANTINE,
                  quarantine_reason=EVIL, declared_purpose=EVIL_ATTR)],
        tally=[(EVIL, EVIL_ATTR, 1, 0)],
        notes=[(EVIL, EVIL, EVIL_ATTR, EVIL)],
        deletions=[("2026-11-22", EVIL, EVIL_ATTR, 1)],
        findings=[(EVIL, EVIL_ATTR, EVIL, EVIL, NOW, NOW)],
        residency=[{"kind": EVIL, "role": EVIL_ATTR, "location": EVIL}],
        proof=replace(proof_ok(), location=EVIL, key_name=EVIL_ATTR, verified=False,
                      error=EVIL, error_exit_code=7),
        audit=AuditLogStatus(EVIL_ATTR, False, None, None, EVIL, 8),
    )
    page = render_html(hostile)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "&lt;script&gt;" in page and "&quot;&gt;&lt;img" in page
    tags = parse(page)
    assert not any(t in ("script", "img", "iframe", "object") for t, _ in tags.tags)
    assert not any(k.startswith("on") for _, attrs in tags.tags for k in attrs)
    text = "".join(tags.text)
    assert EVIL in text and EVIL_ATTR in text  # shown as text, intact


def test_page_is_self_contained():
    page = render_html(full_report())
    assert page.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    without_ns = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for external in ("http://", "https://", "src=", "<link", "@import", "url(", "<script"):
        assert external not in without_ns, external
    assert page.count("<svg") == 1


def test_chart_has_one_bar_group_per_day_gaps_included():
    page = render_html(full_report())
    bars = [a for t, a in parse(page).tags if t == "g" and a.get("class") == "bar"]
    assert [(b["data-start"], b["data-total"]) for b in bars] == [
        ("2026-11-20", "3"), ("2026-11-21", "0"), ("2026-11-22", "0"), ("2026-11-23", "1")]
    rects = [a for t, a in parse(page).tags if t == "rect" and "data-count" in a]
    assert sorted((r["data-reason"], r["data-count"]) for r in rects) == [
        ("objection", "1"), ("retention-expired", "2"), ("sampling-cap", "1")]
    legend = [a["data-reason"] for t, a in parse(page).tags if a.get("class") == "legend-item"]
    assert legend == ["retention-expired", "objection", "sampling-cap"]


@pytest.mark.parametrize(
    ("days", "granularity", "bars"),
    [
        pytest.param(["2026-01-01"], "day", 1, id="one-day"),
        pytest.param(["2026-01-01", "2026-03-03"], "day", 62, id="62-days"),
        pytest.param(["2026-01-01", "2026-03-04"], "week", 10, id="63-days-weekly"),
        pytest.param(["2024-01-01", "2026-01-01"], "month", 25, id="two-years-monthly"),
    ],
)
def test_chart_granularity(days, granularity, bars):
    got, buckets = chart_buckets([DeletionDay(d, "quality", "retention-expired", 2)
                                  for d in days])
    assert (got, len(buckets)) == (granularity, bars)
    assert sum(b.total for b in buckets) == 2 * len(days)
    svg = deletions_svg([DeletionDay(d, "quality", "retention-expired", 2) for d in days])
    assert svg.count('class="bar"') == bars and f'data-granularity="{granularity}"' in svg


@pytest.mark.parametrize(
    ("n", "expected"),
    [pytest.param(0, (1, 1), id="zero"), pytest.param(1, (1, 1), id="one"),
     pytest.param(4, (4, 1), id="four"), pytest.param(7, (8, 2), id="seven"),
     pytest.param(23, (25, 5), id="23"), pytest.param(980, (1000, 200), id="980")],
)
def test_nice_axis(n, expected):
    assert nice_ceiling(n) == expected


def test_empty_report_renders():
    r = build()
    assert r.live == 0 and r.warnings == () and r.exit_code == 0
    page = render_html(r)
    text = " ".join("".join(parse(page).text).split())
    for phrase in ("No warnings.", "No recording has been deleted yet.", "No call ingested yet.",
                   "Nothing in quarantine.", "No notes finding on live recordings.",
                   "Not declared", "The vault and the catalog agree."):
        assert phrase in text, phrase
    assert 'data-figure="live"><div class="value">0<' in page


def test_figures_present_in_the_page():
    r = full_report()
    page = render_html(r)

    def card(key: str) -> str:
        m = re.search(rf'data-figure="{key}"><div class="value">([^<]*)<', page)
        assert m, key
        return m.group(1)

    assert (card("live"), card("overdue"), card("held-overdue"), card("quarantined"),
            card("notes-findings"), card("deleted"), card("proof-log"), card("audit-log")) == \
        ("6", "1", "1", "1", "1", "4", "3", "4")
    row = re.search(r'<tr data-purpose="quality">(.*?)</tr>', page).group(1)
    cells = dict(re.findall(r'data-col="([a-z_]+)">([^<]*)<', row))
    assert (cells["count"], cells["overdue"], cells["held"], cells["held_overdue"],
            cells["deleted"], cells["kept_ratio"]) == ("3", "1", "1", "1", "3", "70.0\u00a0%")
    assert "unit-policy" in page and POLICY.sha256 in page
    assert "ROOTHASH=" in page and "ab" * 32 in page
    assert "ne peut être ni automatique ni systématique" in page  # CNIL rule cited
    assert "not in policy" in page  # marketing-old


def test_keys_section():
    from dataclasses import replace as replaced

    from retentiond.service.report import KeysStatus

    replace = replaced

    assert 'href="#keys"' not in render_html(full_report())  # no key figures, no link
    keys = KeysStatus(current="kek-20261201-0a0b0c0d",
                      in_use=(("kek-20261101-<b>x", 2), ("kek-20261201-0a0b0c0d", 5)),
                      retired=(("kek-20261001-aaaaaaaa", NOW - timedelta(days=30)),),
                      files=("kek-20261101-<b>x", "kek-20261115-0000ffff",
                             "kek-20261201-0a0b0c0d"))
    r = replaced(full_report(), keys=keys)
    assert r.to_json()["keys"] == {
        "current": "kek-20261201-0a0b0c0d", "current_since": "2026-12-01",
        "in_use": {"kek-20261101-<b>x": 2, "kek-20261201-0a0b0c0d": 5},
        "kept": ["kek-20261101-<b>x", "kek-20261115-0000ffff"], "missing": [],
        "retired": [{"kek_id": "kek-20261001-aaaaaaaa",
                     "retired_at": "2026-10-24T09:00:00+00:00"}]}
    page = render_html(r)
    assert 'href="#keys"' in page and '<section id="keys">' in page
    assert 'data-figure="kek-current">kek-20261201-0a0b0c0d<' in page
    assert 'data-figure="kek-since">2026-12-01<' in page
    assert 'data-figure="kek-kept">2<' in page and "kek-20261115-0000ffff</code> kept" in page
    assert 'data-figure="kek-retired">1<' in page and "kek-20261001-aaaaaaaa" in page
    assert "<b>x" not in page and "&lt;b&gt;x" in page
    assert "l’infogérant présente les garanties suffisantes" in page  # the rule it serves
    assert KeysStatus(current="kek-odd", in_use=(), retired=()).current_since is None
    assert "keys-not-rotated" not in {w.code for w in r.warnings}  # not reassessed

    def warnings(k: KeysStatus) -> list[tuple[str, int]]:
        return [(w.code, w.count) for w in assemble_report(
            now=NOW, policy=POLICY, plan=[], counts=(), tally=(), notes=(), deletions=(),
            findings=(), residency=(), proof_log=proof_ok(), audit_log=AUDIT_OK,
            keys=k).warnings]

    assert warnings(keys) == [("keys-not-rotated", 2)]
    lost = replace(keys, files=("kek-20261201-0a0b0c0d",))  # the old one's file is gone
    assert warnings(lost) == [("keys-missing", 2), ("keys-not-rotated", 2)]
    assert "FILE MISSING" in render_html(replaced(full_report(), keys=lost))
    clean = replace(keys, in_use=(("kek-20261201-0a0b0c0d", 5),))
    assert warnings(clean) == []


def test_long_tables_are_cut_and_say_so():
    notes = [(f"id{i:05d}", "quality", "health", "health.fr.condition")
             for i in range(MAX_ROWS + 5)]
    page = render_html(build(notes=notes))
    assert page.count('<tr data-id="id') == MAX_ROWS
    assert "and 5 more" in page
