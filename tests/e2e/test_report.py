"""``audit report`` through the real command line on an ``init`` setup, and the HTML page
rendered in a real headless Chromium (Debian ``chromium``, installed here if missing).

The expected figures are taken from other commands (``ls --all --json``, ``proof verify
--json``, ``audit verify --json``), never from the report code itself.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.apt import apt_install
from tests.conftest import make_wav, run_cli, use_policy, write_sidecar

CHROMIUM_PACKAGES = ("chromium",)
CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_TIMEOUT = 900.0  # seconds for apt-get (≈60 s for chromium and its libraries)
RENDER_TIMEOUT = 60.0  # seconds per Chromium run (≈1-3 s)

POLICY = """\
version: 1
name: report-test
purposes:
  quality:
    legal_basis: legitimate-interests
    retention: PT30S
    media: [audio]
    max_sample_ratio: 0.5
  training:
    legal_basis: legitimate-interests
    retention: P6M
    media: [audio, screen]
  banking-evidence:
    legal_basis: legal-obligation
    retention: P5Y
    min_retention: P5Y
quarantine:
  retention: P1D
"""
CONTROLLERS = """
controllers:
  - name: "Banque Exemple SA"
    processor: {name: "CallCo SARL", country: MA, transfer_safeguard: standard-contractual-clauses}
"""
HOSTILE_AGENT = "<script>document.title='pwned'</script><b>bold</b>"
SENSITIVE_NOTE = "Client diabétique, très pénible au téléphone"


# -- Chromium ------------------------------------------------------------------------------


def _which_chromium() -> str | None:
    return next((p for n in CHROMIUM_NAMES if (p := shutil.which(n))), None)


def ensure_chromium() -> str:
    """The Chromium binary; apt-get installs Debian's ``chromium`` if it is missing (as root,
    or with passwordless sudo), as tests/cephrgw.py does for Ceph. Fails with a clear
    message when it cannot: this test is the acceptance check of the HTML report."""
    found = _which_chromium()
    if found:
        return found
    try:
        apt_install(CHROMIUM_PACKAGES, timeout=INSTALL_TIMEOUT)
    except RuntimeError as e:
        pytest.fail(f"cannot install Chromium: {e}\nrun as root or with passwordless sudo, "
                    f"or apt-get install {' '.join(CHROMIUM_PACKAGES)}")
    found = _which_chromium()
    if not found:
        pytest.fail(f"apt-get installed {' '.join(CHROMIUM_PACKAGES)} but no "
                    f"{'/'.join(CHROMIUM_NAMES)} command is on PATH")
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


def run_chromium(binary: str, page: Path, *args: str, profile: Path) -> str:
    """Headless Chromium on ``page`` (file://) with ``args``; returns stdout."""
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False,
                       timeout=RENDER_TIMEOUT)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stderr[-3000:]}"
    return p.stdout


class DomFigures(HTMLParser):
    """Collects, from Chromium's serialised DOM: the text of every ``data-figure``
    element, the cells of every per-purpose row, the chart's bar groups, the title, and
    every element name seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.figures: dict[str, str] = {}
        self.purpose_cells: dict[tuple[str, str], str] = {}
        self.bars: list[dict[str, str]] = []
        self.tags: Counter[str] = Counter()
        self.title = ""
        self.text: list[str] = []
        self._open: list[tuple[str, str, list[str]]] = []  # (tag, key, text parts)
        self._purpose: str | None = None
        self._in_title = False
        self._table_cls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags[tag] += 1
        if tag == "table":
            self._table_cls.append(a.get("class", ""))
        if tag == "title" and not self.title and not self._open:
            self._in_title = True
        if tag == "tr" and "purposes" in (self._table_cls[-1:] or [""])[0]:
            self._purpose = a.get("data-purpose")
        if tag == "g" and a.get("class") == "bar":
            self.bars.append(a)
        if "data-figure" in a:
            self._open.append((tag, "fig:" + a["data-figure"], []))
        elif tag == "td" and self._purpose is not None and "data-col" in a:
            self._open.append((tag, f"cell:{self._purpose}:{a['data-col']}", []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._table_cls:
            self._table_cls.pop()
        if tag == "title":
            self._in_title = False
        if tag == "tr":
            self._purpose = None
        if self._open and self._open[-1][0] == tag:
            _, key, parts = self._open.pop()
            text = " ".join("".join(parts).split())
            if key.startswith("fig:"):
                self.figures.setdefault(key[4:], text)
            else:
                _, purpose, col = key.split(":", 2)
                self.purpose_cells[(purpose, col)] = text

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.title += data
        for _, _, parts in self._open:
            parts.append(data)


def card_value(dom: DomFigures, key: str) -> int:
    """The number shown by a summary card (its first word, thin spaces removed)."""
    return int(dom.figures[key].split()[0].replace("\u202f", ""))


# -- the setup -----------------------------------------------------------------------------


def _recording(folder: Path, name: str, seed: int, **sidecar: object) -> Path:
    path = folder / name
    make_wav(path, seed=seed)
    write_sidecar(path, **sidecar)
    return path


def _ls_all(setup: Path) -> list[dict]:
    p = run_cli("ls", "--all", "--json", setup=setup)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture
def report_setup(setup_dir: Path, tmp_path: Path) -> dict:
    """A setup with several purposes and agents, deletions by sweep (retention, sampling
    cap, objection), a legal hold past its date, a quarantined recording, notes with
    sensitive words, and one audited decrypt. Returns what the other commands say."""
    use_policy(setup_dir, POLICY)
    with (setup_dir / "retentiond.yaml").open("a", encoding="utf-8") as fh:
        fh.write(CONTROLLERS)
    src = tmp_path / "calls"
    src.mkdir()
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    files = [
        # quality: recorded 2 h ago, retention PT30S: all due; sampling cap 0.5
        *(_recording(src, f"q{i}.wav", i, purpose="quality", call_id=f"Q-{i}",
                     agent=f"agent-{i % 2 + 1}", recorded_at=old) for i in range(8)),
        # training: kept 6 months; one with sensitive notes, one with a hostile agent id
        _recording(src, "t0.wav", 20, purpose="training", call_id="T-0", agent="agent-1",
                   notes=SENSITIVE_NOTE),
        _recording(src, "t1.wav", 21, purpose="training", call_id="T-1", agent=HOSTILE_AGENT),
        _recording(src, "t2.wav", 22, purpose="training", call_id="T-2", agent="agent-2"),
        # the caller objected: deleted at the next sweep
        _recording(src, "t3.wav", 23, purpose="training", call_id="T-3", agent="agent-2",
                   objection=True),
        # an undeclared purpose: quarantined
        _recording(src, "m0.wav", 30, purpose="marketing", call_id="M-0", agent="agent-1"),
    ]
    p = run_cli("ingest", *map(str, files), setup=setup_dir)
    assert p.returncode in (0, 1), p.stderr
    before = {r["call_id"]: r for r in _ls_all(setup_dir)}
    over_cap = sum(1 for r in before.values() if r["rule"] == "sampling-cap")
    # hold one quality recording: past its date, so held-overdue after the sweep
    held = before["Q-0"]["id"]
    assert run_cli("hold", "add", held, "--reason", "dispute 77", setup=setup_dir).returncode == 0
    p = run_cli("sweep", "--json", setup=setup_dir)
    assert p.returncode == 1, p.stderr  # held-overdue is a warning
    # the pass's own day (UTC), not the clock's after it: a run may cross midnight
    sweep_day = datetime.fromisoformat(json.loads(p.stdout)["at"]).astimezone(UTC).date(
    ).isoformat()
    out = tmp_path / "copy.wav"
    p = run_cli("get", before["T-2"]["id"], "--out", str(out), "--actor", "dpo",
                "--reason", "audit sample", setup=setup_dir)
    assert p.returncode == 0, p.stderr
    after = _ls_all(setup_dir)
    proof = json.loads(run_cli("proof", "verify", "--json", setup=setup_dir).stdout)
    audit = json.loads(run_cli("audit", "verify", "--json", setup=setup_dir).stdout)
    return {"setup": setup_dir, "before": before, "after": after, "over_cap": over_cap,
            "held": held, "sweep_day": sweep_day, "proof": proof, "audit": audit,
            "ids": {c: r["id"] for c, r in before.items()}}


def _expected(s: dict) -> dict:
    after = s["after"]
    live = [r for r in after if r["state"] != "deleted"]
    deleted = [r for r in after if r["state"] == "deleted"]
    return {
        "live": len(live),
        "live_by_purpose": Counter(r["purpose"] for r in live),
        "deleted_by_purpose": Counter(r["purpose"] for r in deleted),
        "deleted_by_reason": Counter(r["rule"] for r in deleted),
        "deleted": len(deleted),
    }


# -- the tests -----------------------------------------------------------------------------


def test_report_json_figures_match_the_other_commands(report_setup):
    s = report_setup
    setup, exp = s["setup"], _expected(report_setup)
    p = run_cli("audit", "report", "--json", setup=setup)
    assert p.returncode == 1, p.stderr  # warnings: held-overdue, quarantine, notes
    r = json.loads(p.stdout)
    assert set(r) >= {"report_version", "generated_at", "policy", "summary", "purposes",
                      "sampling", "quarantine", "notes_findings", "residency", "deletions",
                      "proof_log", "audit_log", "store_findings", "warnings", "exit_code"}
    assert r["policy"]["name"] == "report-test" and len(r["policy"]["sha256"]) == 64
    current = (setup / "keys" / "kek.current").read_text().strip()
    assert r["keys"]["current"] == current and r["keys"]["retired"] == []
    assert r["keys"]["in_use"] == {current: exp["live"]}  # deleted ones have no key left
    assert r["keys"]["kept"] == r["keys"]["missing"] == []
    purposes = {p["purpose"]: p for p in r["purposes"]}
    assert list(purposes) == ["quality", "training", "banking-evidence"]
    for name, row in purposes.items():
        assert row["count"] == exp["live_by_purpose"][name], name
        assert row["deleted"] == exp["deleted_by_purpose"][name], name
    quality, training = purposes["quality"], purposes["training"]
    assert (quality["count"], quality["held"], quality["held_overdue"], quality["overdue"]) \
        == (1, 1, 1, 0)
    assert quality["deleted"] == 7 and training["deleted"] == 1  # 7 due + 1 objection
    assert training["count"] == 3 and training["overdue"] == 0
    # the tally counts what the cap really deleted (a held one over the cap stays)
    capped = s["over_cap"] - (1 if s["before"]["Q-0"]["rule"] == "sampling-cap" else 0)
    assert capped == exp["deleted_by_reason"].get("sampling-cap", 0)
    assert quality["ingested"] == 8 and quality["over_cap"] == capped
    assert quality["kept_ratio"] == pytest.approx((8 - capped) / 8)
    assert training["next_due"] is not None and quality["next_due"] is None
    by_agent = {(a["purpose"], a["agent"]): a for a in r["sampling"]["by_agent"]}
    assert by_agent[("quality", "agent-1")]["ingested"] == 4
    assert by_agent[("quality", "agent-2")]["ingested"] == 4
    assert by_agent[("training", HOSTILE_AGENT)]["ingested"] == 1
    assert sum(a["over_cap"] for a in by_agent.values()) == capped

    q = r["quarantine"]
    assert q["count"] == 1 and q["items"][0]["id"] == s["ids"]["M-0"]
    assert "marketing" in q["reasons"][0]["reason"] and q["reasons"][0]["count"] == 1

    [finding] = r["notes_findings"]
    assert finding["id"] == s["ids"]["T-0"] and finding["purpose"] == "training"
    assert "health" in finding["categories"]
    assert "diabétique" not in p.stdout and "pénible" not in p.stdout  # never the note

    d = r["deletions"]
    assert d["total"] == exp["deleted"] == r["summary"]["deleted"]
    assert d["by_reason"] == dict(exp["deleted_by_reason"])
    assert d["by_reason"]["objection"] == 1
    assert d["by_reason"].get("sampling-cap", 0) == s["over_cap"] - (
        1 if s["before"]["Q-0"]["rule"] == "sampling-cap" else 0)

    proof = r["proof_log"]
    assert proof["verified"] is True and proof["error"] is None
    assert proof["entries"] == s["proof"]["size"] == exp["deleted"]
    assert proof["checkpoint"]["tree_size"] == s["proof"]["size"]
    assert proof["checkpoint"]["root_hash"] == s["proof"]["root"]
    assert proof["checkpoint"]["key_name"] == s["proof"]["origin"]
    assert proof["consistent_with_witness"] is True  # proof verify kept its checkpoint
    audit = r["audit_log"]
    assert audit["verified"] is True
    assert (audit["entries"], audit["head"]) == (s["audit"]["entries"], s["audit"]["head"])
    assert audit["entries"] >= 2  # the hold and the decrypt

    assert r["summary"]["live"] == exp["live"]
    assert r["summary"]["held_overdue"] == 1 and r["summary"]["overdue"] == 0
    assert {w["code"] for w in r["warnings"]} == {"held-overdue", "quarantined",
                                                 "notes-findings"}
    assert r["exit_code"] == 1
    stores = [x for x in r["residency"] if x.get("kind") == "store"]
    assert {x["role"] for x in stores} == {"inbox", "vault", "proofs"}
    assert all(x["zone"] == "eea" for x in stores)
    [proc] = [x for x in r["residency"] if x.get("kind") == "processor"]
    assert (proc["controller"], proc["processor"], proc["country"], proc["safeguard"]) == \
        ("Banque Exemple SA", "CallCo SARL", "MA", "standard-contractual-clauses")

    # plan agrees: nothing to delete now, one held past its date
    plan = json.loads(run_cli("plan", "--json", setup=setup).stdout)
    assert [(i["id"], i["rule"]) for i in plan["items"]] == [(s["held"], "legal-hold-overdue")]

    # the text summary and the JSON file agree, with the same exit code
    p = run_cli("audit", "report", setup=setup)
    assert p.returncode == 1 and "held-overdue (1)" in p.stdout, p.stdout + p.stderr
    assert f"keys: {r['keys']['current']} in force (since {r['keys']['current_since']}), " \
        f"{exp['live']} data key(s), 0 under older keys, 0 old key(s) kept, 0 retired" \
        in p.stdout
    out = setup / "report.json"
    p = run_cli("audit", "report", "--out", str(out), "--json", setup=setup)
    assert p.returncode == 1, p.stderr
    written = json.loads(out.read_text(encoding="utf-8"))
    assert {k: v for k, v in written.items() if k != "generated_at"} == \
        {k: v for k, v in r.items() if k != "generated_at"}

    # a tampered proof log: exit 7, and the report is still made, saying why
    bundle = next(f for f in (setup / "proofs" / "tile" / "entries").rglob("*") if f.is_file())
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.write_bytes(bytes(data))
    p = run_cli("audit", "report", "--json", setup=setup)
    assert p.returncode == 7, p.stderr
    r = json.loads(p.stdout)
    assert r["proof_log"]["verified"] is False and r["proof_log"]["error"]
    assert r["warnings"][0]["code"] == "proof-log-unverified"


def test_report_html_in_real_chromium(report_setup, chromium, tmp_path):
    s = report_setup
    setup, exp = s["setup"], _expected(report_setup)
    page = tmp_path / "r.html"
    p = run_cli("audit", "report", "--out", str(page), setup=setup)
    assert p.returncode == 1, p.stderr
    assert f"wrote {page}" in p.stdout
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    source = page.read_text(encoding="utf-8")
    assert "diabétique" not in source and "pénible" not in source
    assert HOSTILE_AGENT not in source  # escaped, never markup
    for external in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert external not in source.replace('xmlns="http://www.w3.org/2000/svg"', ""), \
            external

    dom_text = run_chromium(chromium, page, "--dump-dom", profile=tmp_path / "profile")
    dom = DomFigures()
    dom.feed(dom_text)
    assert dom.title.startswith("Compliance report – report-test"), dom.title
    assert "pwned" not in dom.title and dom.tags["script"] == 0 and dom.tags["b"] == 0
    assert HOSTILE_AGENT in "".join(dom.text)  # shown as text
    assert card_value(dom, "live") == exp["live"]
    assert card_value(dom, "overdue") == 0
    assert card_value(dom, "held-overdue") == 1
    assert card_value(dom, "quarantined") == 1
    assert card_value(dom, "notes-findings") == 1
    assert card_value(dom, "deleted") == exp["deleted"]
    assert card_value(dom, "proof-log") == s["proof"]["size"]
    assert card_value(dom, "audit-log") == s["audit"]["entries"]
    assert dom.figures["proof-verified"] == "verifies"
    assert dom.figures["proof-root"] == s["proof"]["root"]
    assert dom.figures["audit-head"] == s["audit"]["head"]
    assert dom.figures["policy-name"] == "report-test"
    assert dom.figures["kek-current"] == (s["setup"] / "keys" / "kek.current").read_text().strip()
    for purpose in ("quality", "training", "banking-evidence"):
        assert dom.purpose_cells[(purpose, "count")] == str(exp["live_by_purpose"][purpose])
        assert dom.purpose_cells[(purpose, "deleted")] == str(exp["deleted_by_purpose"][purpose])
    assert dom.purpose_cells[("quality", "held_overdue")] == "1"
    # one bar group per day with deletions (all happened today), totals match
    assert [b["data-start"] for b in dom.bars] == [s["sweep_day"]]
    assert sum(int(b["data-total"]) for b in dom.bars) == exp["deleted"]
    assert "objection" in "".join(dom.text)  # the legend
    assert "CallCo SARL" in "".join(dom.text) and "standard-contractual-clauses" in \
        "".join(dom.text)  # the processor, in the residency section

    shot = tmp_path / "report.png"
    run_chromium(chromium, page, f"--screenshot={shot}", "--window-size=1280,2000",
                 profile=tmp_path / "profile")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    if os.environ.get("RETENTIOND_REPORT_SCREENSHOT"):  # to look at it (see docs/report.md)
        shutil.copyfile(shot, os.environ["RETENTIOND_REPORT_SCREENSHOT"])
