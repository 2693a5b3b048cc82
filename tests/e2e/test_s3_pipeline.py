"""The whole job on buckets of a live S3 server: a recording put into an inbox bucket is
ingested, tagged, encrypted into a versioned, Object Lock vault bucket, deleted when due
with every version and delete marker, and its proof (in a third bucket) verifies. Every
scenario runs on moto_server and on a real Ceph RADOS Gateway (``tests/cephrgw.py``)."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retentiond.adapters.s3_proofs import S3ProofStore
from retentiond.clock import ManualClock
from retentiond.core.model import State
from retentiond.crypto.signing import NoteVerifier
from retentiond.errors import StorageError
from retentiond.service.access import retrieve
from retentiond.service.daemon import Daemon
from retentiond.service.holds import HoldTarget, add_holds, place_holds, remove_holds
from retentiond.service.prooflog import verify_log
from retentiond.service.wiring import App, build_app
from retentiond.settings import load_settings
from tests.cephrgw import ceph_rgw
from tests.conftest import cli_env, logged, make_wav, run_cli
from tests.s3server import S3Server, dummy_aws_env, moto_s3

__all__ = ["ceph_rgw", "moto_s3"]

pytestmark = pytest.mark.slow


def s3_config(setup: Path, server: S3Server, *, inbox: str, vault: str, proofs: str) -> None:
    """Point an ``init`` setup at buckets: the README's "Running against S3" shape."""
    cfg = setup / "retentiond.yaml"
    text = cfg.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^inbox:.*\n  - inbox/\n", f"inbox:\n  - s3://{inbox}/incoming/\n", text)
    text = re.sub(r"(?m)^vault: .*$", f"vault: s3://{vault}/v/", text)
    text = re.sub(r"(?m)^proofs: .*$", f"proofs: s3://{proofs}/log/", text)
    text += (f"s3:\n  endpoint_url: {server.endpoint}\n  region: us-east-1\n"
             "  addressing_style: path\n  max_attempts: 2\n")
    cfg.write_text(text, encoding="utf-8")


def aws_env(setup: Path) -> dict[str, str]:
    env = cli_env(setup)
    for k in list(env):
        if k.startswith("AWS_"):
            del env[k]
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_EC2_METADATA_DISABLED": "true"})
    return env


def make_buckets(server: Any, setup: Path) -> dict[str, Any]:
    """Inbox, versioned Object Lock vault and proof buckets on ``server``; the setup's
    config pointed at them."""
    client = server.client()
    names = {"inbox": server.bucket(client=client),
             "vault": server.bucket(versioned=True, object_lock=True, client=client),
             "proofs": server.bucket(client=client)}
    s3_config(setup, server, **names)
    return {"client": client, "setup": setup, "server": server, **names}


@pytest.fixture(params=["moto", pytest.param("rgw", marks=pytest.mark.rgw)])
def buckets(request: pytest.FixtureRequest, short_setup: Path) -> dict[str, Any]:
    server = request.getfixturevalue("moto_s3" if request.param == "moto" else "ceph_rgw")
    return make_buckets(server, short_setup)


@pytest.fixture
def s3_app(buckets: dict[str, Any]) -> Iterator[tuple[App, ManualClock]]:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    with dummy_aws_env():
        app = build_app(load_settings(buckets["setup"] / "retentiond.yaml", environ={}),
                        clock=clock)
    yield app, clock
    app.close()


def put(client: Any, bucket: str, key: str, body: bytes, **extra: Any) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=body, **extra)


def keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    resp = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def test_inbox_bucket_to_locked_vault_to_verified_deletion(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock], tmp_path: Path) -> None:
    app, clock = s3_app
    c, inbox, vault = buckets["client"], buckets["inbox"], buckets["vault"]
    now = clock.now()
    audio = {n: make_wav(tmp_path / f"{n}.wav", seed=i) for i, n in enumerate("abc")}
    # a: quality, sidecar object; b: banking (rule on prefix) -> Object Lock 5 years;
    # c: sidecar in x-amz-meta-retentiond-* metadata, caller objected
    put(c, inbox, "incoming/calls/+33612345678-a.wav", audio["a"])
    put(c, inbox, "incoming/calls/+33612345678-a.wav.json", json.dumps({
        "purpose": "quality", "recorded_at": now.isoformat(), "call_id": "call-a",
        "subject": "+33612345678"}).encode())
    put(c, inbox, "incoming/banking/b.wav", audio["b"])
    put(c, inbox, "incoming/calls/c.wav", audio["c"], Metadata={
        "retentiond-purpose": "quality", "retentiond-objection": "true",
        "retentiond-recorded-at": now.isoformat()})

    daemon = Daemon(app, sleep=lambda s: clock.advance(timedelta(seconds=s)))
    report = daemon.run_once()
    outcomes = {o.source.rsplit("/", 1)[1]: o for o in report.ingested}
    assert {k: o.outcome for k, o in outcomes.items()} == {
        "+33612345678-a.wav": "stored", "b.wav": "stored", "c.wav": "stored"}
    assert keys(c, inbox) == []  # plaintext and sidecars gone from the inbox bucket
    a, b, cc = (app.catalog.get(outcomes[n].object_id or "")
                for n in ("+33612345678-a.wav", "b.wav", "c.wav"))
    assert a.source == f"s3://{inbox}/incoming/calls/+33612345678-a.wav"
    assert (a.purpose, b.purpose, cc.purpose) == ("quality", "banking-evidence", "quality")
    # a keyed pseudonym, not the number (a short digit run like "336" can occur in any
    # hex digest: 1 run in 70 had it)
    assert a.subject_ref is not None and a.subject_ref.startswith("hmac-sha256:")
    assert "612345678" not in a.subject_ref
    # the objection was enforced by the same pass, with a proof
    assert cc.state is State.DELETED
    assert [i.rule for i in report.sweep.items] == ["objection"] if report.sweep else False

    # tags and metadata travel with the ciphertext; no personal data in them
    tags = {t["Key"]: t["Value"] for t in c.get_object_tagging(
        Bucket=vault, Key=f"v/{b.location}")["TagSet"]}
    assert tags["retentiond-purpose"] == "banking-evidence"
    assert tags["retentiond-legal-basis"] == "legal-obligation"
    assert tags["retentiond-policy"] == "test-short"
    assert tags["retentiond-delete-after"].startswith(str(b.recorded_at.year + 5))
    head = c.head_object(Bucket=vault, Key=f"v/{b.location}")
    assert head["Metadata"]["retentiond-policy-sha256"] == app.policy.sha256
    assert head["Metadata"]["retentiond-object-id"] == b.id
    # banking evidence: Object Lock retention = the min_retention floor
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] >= b.recorded_at + timedelta(days=5 * 365)
    with pytest.raises(c.exceptions.ClientError, match="AccessDenied"):
        c.delete_object(Bucket=vault, Key=f"v/{b.location}", VersionId=head["VersionId"])
    assert "ObjectLockMode" not in c.head_object(Bucket=vault, Key=f"v/{a.location}")
    got = tmp_path / "b.out"
    retrieve(app, b.id, out=got, actor="auditor", reason="e2e check", now=clock.now())
    assert got.read_bytes() == audio["b"]

    # holds are mirrored on the S3 legal hold
    assert add_holds(app, [a.id], reason="case 12", actor="dpo", now=clock.now()) == []
    assert c.get_object_legal_hold(Bucket=vault, Key=f"v/{a.location}")["LegalHold"] == {
        "Status": "ON"}
    assert remove_holds(app, a.id, reason="closed", actor="dpo", now=clock.now()) == (1, None)
    assert c.get_object_legal_hold(Bucket=vault, Key=f"v/{a.location}")["LegalHold"] == {
        "Status": "OFF"}

    # someone adds versions and a delete marker behind retentiond's back
    extra = b"out-of-band"
    put(c, vault, f"v/{a.location}", extra,
        ContentMD5=__import__("base64").b64encode(hashlib.md5(extra).digest()).decode())
    c.delete_object(Bucket=vault, Key=f"v/{a.location}")
    before = c.list_object_versions(Bucket=vault, Prefix=f"v/{a.location}")
    ids = {v["VersionId"] for v in before.get("Versions", []) + before.get("DeleteMarkers", [])}
    assert len(ids) == 3

    clock.advance(timedelta(seconds=31))  # quality: PT30S in the short policy
    sweep = daemon.sweeper.sweep(now=clock.now())
    assert [(i.id, i.outcome) for i in sweep.items] == [(a.id, "deleted")]
    after = c.list_object_versions(Bucket=vault, Prefix=f"v/{a.location}")
    assert after.get("Versions", []) == [] and after.get("DeleteMarkers", []) == []

    # the proofs, in their bucket, verify; the record names every version
    store = S3ProofStore(buckets["proofs"], "log", client=c)
    verifier = NoteVerifier.from_text(
        (buckets["setup"] / "keys/proof-log.vkey").read_text().strip())
    result = verify_log(store, verifier=verifier, origin=verifier.name)
    assert result.size == 2
    records = [json.loads(app.proof_log.entry(i)) for i in range(2)]
    assert [r["reason"] for r in records] == ["objection", "retention-expired"]
    assert set(records[1]["version_ids"]) == ids
    assert records[1]["location"] == f"s3://{vault}/v/{a.location}"
    assert "+336" not in json.dumps(records)
    assert keys(c, vault, "v/") == [f"v/{b.location}"]


def test_cli_run_ls_and_proof_verify_on_buckets(buckets: dict[str, Any], tmp_path: Path) -> None:
    c, setup = buckets["client"], buckets["setup"]
    env = aws_env(setup)
    put(c, buckets["inbox"], "incoming/x.wav", make_wav(tmp_path / "x.wav"), Metadata={
        "retentiond-purpose": "training", "retentiond-media": "audio"})
    r = run_cli("run", "--once", env=env)
    assert r.returncode == 0, r.stderr
    assert "stored" in r.stdout
    r = run_cli("ls", "--json", env=env)
    (row,) = json.loads(r.stdout)
    assert row["source"] == f"s3://{buckets['inbox']}/incoming/x.wav"
    assert row["purpose"] == "training"
    r = run_cli("proof", "verify", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"ok: s3://{buckets['proofs']}/log/: 0 entries")
    r = run_cli("get", row["id"], "--out", str(tmp_path / "x.out"), "--actor", "qa",
                "--reason", "check", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.out").read_bytes() == (tmp_path / "x.wav").read_bytes()


def test_missing_vault_bucket_keeps_the_plaintext_then_recovers(
        buckets: dict[str, Any], tmp_path: Path) -> None:
    c, setup = buckets["client"], buckets["setup"]
    later = f"later-{buckets['vault']}"
    cfg = setup / "retentiond.yaml"
    cfg.write_text(cfg.read_text().replace(f"s3://{buckets['vault']}/v/", f"s3://{later}/v/"))
    env = aws_env(setup)
    data = make_wav(tmp_path / "y.wav")
    put(c, buckets["inbox"], "incoming/y.wav", data, Metadata={"retentiond-purpose": "training"})
    r = run_cli("run", "--once", env=env)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert f"s3://{later}: bucket does not exist" in r.stdout + r.stderr
    assert keys(c, buckets["inbox"]) == ["incoming/y.wav"]  # nothing lost
    assert run_cli("ls", "--json", env=env).stdout.strip() == "[]"
    c.create_bucket(Bucket=later)
    r = run_cli("run", "--once", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert keys(c, buckets["inbox"]) == []
    assert len(keys(c, later, "v/")) == 1


def test_batch_delete_setting_reaches_the_vault(buckets: dict[str, Any]) -> None:
    setup = buckets["setup"]
    cfg = setup / "retentiond.yaml"
    base = cfg.read_text()
    with dummy_aws_env():
        app = build_app(load_settings(cfg, environ={}))
        assert app.vault.batch_delete is True  # type: ignore[attr-defined]
        app.close()
        cfg.write_text(base + "s3:\n  batch_delete: false\n" if "\ns3:" not in base else
                       base.replace("\ns3:\n", "\ns3:\n  batch_delete: false\n", 1))
        app = build_app(load_settings(cfg, environ={}))
        assert app.vault.batch_delete is False  # type: ignore[attr-defined]
        app.close()
        cfg.write_text(base)
        app = build_app(load_settings(cfg, environ={"RETENTIOND_S3_BATCH_DELETE": "false"}))
        assert app.vault.batch_delete is False  # type: ignore[attr-defined]
        app.close()


def test_unreachable_server_is_a_clear_storage_error(buckets: dict[str, Any]) -> None:
    setup = buckets["setup"]
    cfg = setup / "retentiond.yaml"
    cfg.write_text(re.sub(r"endpoint_url: \S+", "endpoint_url: http://127.0.0.1:9",
                          cfg.read_text()))
    r = run_cli("run", "--once", env=aws_env(setup), timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "cannot reach the S3 endpoint on http://127.0.0.1:9" in r.stdout + r.stderr


def test_bad_s3_settings_name_the_key(short_setup: Path) -> None:
    cfg = short_setup / "retentiond.yaml"
    base = cfg.read_text()
    for text, message in [
        (base.replace("vault: vault/", "vault: s3://Bad_Bucket/"), "is not a valid bucket name"),
        (base + "s3:\n  addressing_style: sideways\n", "s3.addressing_style: one of auto"),
        (base + "s3:\n  object_lock_mode: forever\n", "s3.object_lock_mode: one of GOVERNANCE"),
        (base + "s3:\n  batch_delete: maybe\n", "s3.batch_delete: true or false"),
        (base + "s3:\n  secret_access_key: x\n", "s3.secret_access_key: unknown key"),
    ]:
        cfg.write_text(text)
        r = run_cli("ls", setup=short_setup)
        assert r.returncode == 2, (text, r.stderr)
        assert message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_bucket_recording_stream_is_not_read_whole(buckets: dict[str, Any],
                                                   s3_app: tuple[App, ManualClock]) -> None:
    """A multi-part object (3 parts of the vault's 8 MiB) goes through in constant memory
    and its verification uses the server's multipart ETag, not a second download."""
    app, clock = s3_app
    c = buckets["client"]
    size = 17 * 1024 * 1024 + 5
    body = io.BytesIO(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    c.upload_fileobj(body, buckets["inbox"], "incoming/training/big.wav",
                     ExtraArgs={"Metadata": {"retentiond-purpose": "training"}})
    gets: list[str] = []
    app.s3_inboxes[0].client.meta.events.register(  # the app's one client: inbox and vault
        "before-call.s3.GetObject", lambda params, **_: gets.append(params["url_path"]))
    outcome = app_ingest(app, buckets["inbox"], "training/big.wav", clock)
    assert outcome.outcome == "stored", outcome.message
    assert len(gets) == 2  # the recording and its (absent) sidecar; no read-back of the vault
    rec = app.catalog.get(outcome.object_id or "")
    assert rec.size == size
    assert re.fullmatch(r"[0-9a-f]{32}-3", c.head_object(
        Bucket=buckets["vault"], Key=f"v/{rec.location}")["ETag"].strip('"'))


def app_ingest(app: App, inbox_bucket: str, key: str, clock: ManualClock) -> Any:
    (inbox,) = app.s3_inboxes
    assert inbox.bucket == inbox_bucket
    return Daemon(app).ingestor.ingest_object(inbox, key, now=clock.now())


def test_a_standing_subject_hold_is_mirrored_on_recordings_that_arrive_later(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock], tmp_path: Path) -> None:
    """A hold on a caller keeps their future calls too: each one is put under the S3
    legal hold as it is ingested, not only those present when the hold was placed."""
    app, clock = s3_app
    c, inbox, vault = buckets["client"], buckets["inbox"], buckets["vault"]
    subject = "+33 6 12 34 56 99"
    (change,) = place_holds(app, [HoldTarget("subject", app.keys.pseudonym(subject))],
                            reason="police request 42", actor="dpo", now=clock.now())
    assert change.covered == ()  # nothing of theirs yet
    for seed, (name, who) in enumerate((("later.wav", subject),
                                        ("other.wav", "+33 6 00 00 00 01"))):
        put(c, inbox, f"incoming/{name}", make_wav(tmp_path / name, seed=seed), Metadata={
            "retentiond-purpose": "quality", "retentiond-subject": who})
    later, other = (app_ingest(app, inbox, n, clock)
                    for n in ("later.wav", "other.wav"))
    assert later.outcome == other.outcome == "stored"

    def legal_hold(out: Any) -> str:
        key = f"v/{app.catalog.get(out.object_id).location}"
        try:
            hold = c.get_object_legal_hold(Bucket=vault, Key=key)["LegalHold"]
            return str(hold.get("Status", "OFF"))  # moto: an empty LegalHold if never set
        except c.exceptions.ClientError as e:  # never set on this object
            assert e.response["Error"]["Code"] in (
                "NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"), e
            return "OFF"

    assert legal_hold(later) == "ON" and app.catalog.is_held(later.object_id)
    assert legal_hold(other) == "OFF" and not app.catalog.is_held(other.object_id)


def test_a_late_bucket_sidecar_waits_and_never_goes_to_an_old_recording_of_its_name(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock], tmp_path: Path) -> None:
    """As in a folder: a sidecar listed without its recording is late only after the
    sidecar wait. Uploaded just before a new recording of the same name, its objection is
    that recording's; alone past the wait, it is the live one's (and applied)."""
    app, clock = s3_app
    c, inbox = buckets["client"], buckets["inbox"]
    daemon = Daemon(app)

    def turn(seconds: float = 5) -> list[Any]:
        clock.advance(timedelta(seconds=seconds))
        return [o for o in daemon.ingest_ready(now=clock.now())[0] if o.outcome == "stored"]

    def stored() -> Any:
        for _ in range(3):  # as soon as the settle time allows
            if done := turn():
                (out,) = done
                return out
        raise AssertionError("not ingested")

    def objection(object_id: str) -> bool:
        return app.catalog.get(object_id).objection

    meta = {"retentiond-purpose": "training"}
    put(c, inbox, "incoming/a.wav", make_wav(tmp_path / "a.wav", seed=1), Metadata=meta)
    first = stored()
    put(c, inbox, "incoming/a.wav.json", json.dumps({"purpose": "training",
                                                     "objection": True}).encode())
    turn(0.2)  # listed alone, within the wait: not late yet
    assert objection(first.object_id) is False
    put(c, inbox, "incoming/a.wav", make_wav(tmp_path / "a2.wav", seed=2), Metadata=meta)
    second = stored()
    assert objection(first.object_id) is False and objection(second.object_id) is True

    put(c, inbox, "incoming/a.wav.json", json.dumps({"purpose": "training",
                                                     "objection": True}).encode())
    turn(0.2)
    assert keys(c, inbox, "incoming/") == ["incoming/a.wav.json"]
    turn()  # alone past the wait: late, for the live recording of that name
    assert objection(second.object_id) is True and keys(c, inbox, "incoming/") == []


def test_run_once_later_applies_an_old_late_bucket_objection(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock], tmp_path: Path) -> None:
    """A short-lived process (``run --once`` from cron) never sees a sidecar alone for the
    sidecar wait; one uploaded more than that plus 15 minutes ago (the most S3 lets
    clocks differ) is late whoever looks, and applied at the first listing."""
    app, clock = s3_app
    c, inbox = buckets["client"], buckets["inbox"]
    put(c, inbox, "incoming/a.wav", make_wav(tmp_path / "a.wav"), Metadata={
        "retentiond-purpose": "training"})
    first = Daemon(app).run_once().ingested
    assert [o.outcome for o in first] == ["stored"]
    put(c, inbox, "incoming/a.wav.json", json.dumps({"objection": True}).encode())
    clock.advance(timedelta(minutes=14))
    Daemon(app).ingest_ready(now=clock.now())  # a new process: within the margin
    assert app.catalog.get(first[0].object_id).objection is False
    clock.advance(timedelta(minutes=2))
    Daemon(app).ingest_ready(now=clock.now())  # another one, 16 minutes after the upload
    assert app.catalog.get(first[0].object_id).objection is True
    assert keys(c, inbox, "incoming/") == []


def test_a_failed_bucket_read_is_logged_without_the_object_name(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorders put callers' numbers in object keys: a failure names the inbox in the
    log (the outcome, for the command's own output, keeps the full name)."""
    import logging

    from retentiond.adapters.s3_inbox import S3Inbox
    from retentiond.errors import StorageError

    app, clock = s3_app
    c, inbox = buckets["client"], buckets["inbox"]
    caplog.set_level(logging.ERROR, logger="retentiond.service.ingest")
    put(c, inbox, "incoming/+33612345678.wav", b"RIFF....", Metadata={
        "retentiond-purpose": "quality"})

    def denied(self: S3Inbox, key: str) -> Any:
        raise StorageError(f"{self.url_of(key)}: access denied")

    monkeypatch.setattr(S3Inbox, "open", denied)
    out = app_ingest(app, inbox, "+33612345678.wav", clock)
    assert out.outcome == "failed" and "+33612345678" in out.message
    (message,) = logged(caplog, "ingest.failed")
    assert "+336" not in message and f"an object of s3://{inbox}/incoming" in message


def test_store_lock_blocks_deletion_reported_and_retried(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock], tmp_path: Path) -> None:
    """An S3 legal hold put behind retentiond's back: the sweep reports the recording as
    blocked-by-lock (never silently skipped), keeps its key, and deletes it with its proof
    once the lock is gone."""
    app, clock = s3_app
    c, vault = buckets["client"], buckets["vault"]
    put(c, buckets["inbox"], "incoming/q.wav", make_wav(tmp_path / "q.wav"), Metadata={
        "retentiond-purpose": "quality", "retentiond-recorded-at": clock.now().isoformat()})
    outcome = app_ingest(app, buckets["inbox"], "q.wav", clock)
    rec = app.catalog.get(outcome.object_id or "")
    c.put_object_legal_hold(Bucket=vault, Key=f"v/{rec.location}",
                            LegalHold={"Status": "ON"})
    clock.advance(timedelta(minutes=1))
    sweeper = Daemon(app).sweeper
    report = sweeper.sweep(now=clock.now())
    (item,) = report.items
    assert item.outcome == "blocked-by-lock" and report.has_warnings
    assert "blocked by Object Lock" in (item.error or "") and "legal hold" in (item.error or "")
    assert app.catalog.get(rec.id).state is State.DELETING
    assert app.catalog.wrapped_key(rec.id) is not None
    assert app.proof_log.size() == 0
    c.put_object_legal_hold(Bucket=vault, Key=f"v/{rec.location}",
                            LegalHold={"Status": "OFF"})
    report = sweeper.sweep(now=clock.now())
    assert [(i.id, i.outcome) for i in report.items] == [(rec.id, "deleted")]
    assert app.proof_log.size() == 1


def test_a_deletion_stopped_part_way_names_every_version_when_it_ends(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock], tmp_path: Path) -> None:
    """The versions a pass asks the store to delete are written down first; a locked one
    then stops it; the pass that finishes the deletion, which lists only what is left,
    names them all in the proof, retentiond's own version first."""
    app, clock = s3_app
    c, vault = buckets["client"], buckets["vault"]
    put(c, buckets["inbox"], "incoming/p.wav", make_wav(tmp_path / "p.wav"), Metadata={
        "retentiond-purpose": "quality", "retentiond-recorded-at": clock.now().isoformat()})
    rec = app.catalog.get(app_ingest(app, buckets["inbox"], "p.wav", clock).object_id or "")
    md5 = __import__("base64").b64encode
    extra, held = b"out-of-band", b"out-of-band, held"
    put(c, vault, f"v/{rec.location}", extra, ContentMD5=md5(hashlib.md5(extra).digest()).decode())
    put(c, vault, f"v/{rec.location}", held, ContentMD5=md5(hashlib.md5(held).digest()).decode(),
        ObjectLockLegalHoldStatus="ON")
    listed = c.list_object_versions(Bucket=vault, Prefix=f"v/{rec.location}")["Versions"]
    every = {v["VersionId"] for v in listed}
    held_vid = next(v["VersionId"] for v in listed if v["IsLatest"])
    assert len(every) == 3 and rec.version_id in every
    clock.advance(timedelta(minutes=1))
    sweeper = Daemon(app).sweeper
    (item,) = sweeper.sweep(now=clock.now()).items
    assert item.outcome == "blocked-by-lock", item
    remaining = c.list_object_versions(Bucket=vault, Prefix=f"v/{rec.location}")["Versions"]
    assert [v["VersionId"] for v in remaining] == [held_vid]
    # written down before each request: retentiond's, then the two the listing showed
    attempted = app.catalog.attempted_versions([rec.id])[rec.id]
    assert attempted[0] == rec.version_id and set(attempted) == every
    c.put_object_legal_hold(Bucket=vault, Key=f"v/{rec.location}", VersionId=held_vid,
                            LegalHold={"Status": "OFF"})
    report = sweeper.sweep(now=clock.now())
    assert [(i.id, i.outcome) for i in report.items] == [(rec.id, "deleted")]
    record = json.loads(app.proof_log.entry(0))
    assert record["version_ids"][0] == rec.version_id
    assert sorted(record["version_ids"]) == sorted(every)
    assert app.catalog.attempted_versions([rec.id]) == {}  # named in the record now
    assert c.list_object_versions(Bucket=vault, Prefix=f"v/{rec.location}").get(
        "Versions", []) == []


def test_a_pass_failing_after_the_store_deleted_still_gets_every_version_proven(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The store deletes retentiond's version and one made behind its back, then the
    catalog fails: the next pass, which finds nothing left, names both."""
    app, clock = s3_app
    c, vault = buckets["client"], buckets["vault"]
    put(c, buckets["inbox"], "incoming/f.wav", make_wav(tmp_path / "f.wav"), Metadata={
        "retentiond-purpose": "quality", "retentiond-recorded-at": clock.now().isoformat()})
    rec = app.catalog.get(app_ingest(app, buckets["inbox"], "f.wav", clock).object_id or "")
    extra = b"out-of-band"
    put(c, vault, f"v/{rec.location}", extra, ContentMD5=__import__("base64").b64encode(
        hashlib.md5(extra).digest()).decode())
    every = {v["VersionId"] for v in c.list_object_versions(
        Bucket=vault, Prefix=f"v/{rec.location}")["Versions"]}
    assert len(every) == 2
    real = app.catalog.destroy_keys

    def locked(items: Any) -> None:
        raise StorageError("catalog: database is locked")

    monkeypatch.setattr(app.catalog, "destroy_keys", locked)
    clock.advance(timedelta(minutes=1))
    sweeper = Daemon(app).sweeper
    (item,) = sweeper.sweep(now=clock.now()).items
    assert item.outcome == "failed" and "database is locked" in (item.error or "")
    assert c.list_object_versions(Bucket=vault, Prefix=f"v/{rec.location}").get(
        "Versions", []) == []  # the store did its part
    monkeypatch.setattr(app.catalog, "destroy_keys", real)
    report = sweeper.sweep(now=clock.now())
    assert [(i.id, i.outcome) for i in report.items] == [(rec.id, "deleted")]
    vids = json.loads(app.proof_log.entry(0))["version_ids"]
    assert vids[0] == rec.version_id and set(vids) == every


def test_s3_retries_are_counted_per_store(buckets: dict[str, Any]) -> None:
    """A request boto3 retries (attempt 2+) counts in retentiond_store_retries_total."""
    cfg = buckets["setup"] / "retentiond.yaml"
    cfg.write_text(re.sub(r"endpoint_url: \S+", "endpoint_url: http://127.0.0.1:9",
                          cfg.read_text()))
    with dummy_aws_env():
        app = build_app(load_settings(cfg, environ={}))
    try:
        with pytest.raises(Exception, match="cannot reach"):
            app.vault.head("v1/00/x.rtd")
        value = app.metrics.registry.get_sample_value
        assert value("retentiond_store_retries_total", {"store": "vault"}) == 1  # 2 attempts
        assert value("retentiond_store_retries_total", {"store": "inbox"}) == 0
    finally:
        app.close()


def test_auditor_verifies_the_bucket_log_with_config_or_environment(
        buckets: dict[str, Any], tmp_path: Path) -> None:
    """``proof verify --log s3://...`` reaches a MinIO/Ceph endpoint from the config given
    with --config, or from RETENTIOND_S3_* without any config (an auditor's machine)."""
    setup = buckets["setup"]
    env = aws_env(setup)
    assert run_cli("run", "--once", env=env).returncode == 0
    log = f"s3://{buckets['proofs']}/log/"
    vkey = str(setup / "keys" / "proof-log.vkey")
    args = ["proof", "verify", "--log", log, "--vkey", vkey,
            "--witness", str(tmp_path / "w")]
    r = run_cli("--config", str(setup / "retentiond.yaml"), *args, env=env)
    assert r.returncode == 0 and r.stdout.startswith(f"ok: {log}"), r.stdout + r.stderr
    bare = {k: v for k, v in env.items() if k != "RETENTIOND_CONFIG"}
    r = run_cli(*args, env=bare | {
        "RETENTIOND_S3_ENDPOINT_URL": buckets["server"].endpoint,
        "RETENTIOND_S3_ADDRESSING_STYLE": "path", "RETENTIOND_S3_REGION": "us-east-1"})
    assert r.returncode == 0 and "consistent with the last verified" in r.stdout, r.stderr


def test_missing_inbox_bucket_fails_run_once_and_readiness(buckets: dict[str, Any]) -> None:
    setup = buckets["setup"]
    env = aws_env(setup) | {"RETENTIOND_INBOX": "s3://no-such-inbox-bucket/incoming/"}
    r = run_cli("run", "--once", env=env)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "s3://no-such-inbox-bucket" in r.stderr and "Traceback" not in r.stderr
    from retentiond.cli.daemon_cmd import readiness

    with dummy_aws_env():
        app = build_app(load_settings(setup / "retentiond.yaml", environ={
            "RETENTIOND_INBOX": "s3://no-such-inbox-bucket/incoming/"}))
    try:
        why = readiness(app)
        assert why is not None and why.startswith("inbox: s3://no-such-inbox-bucket")
    finally:
        app.close()


def test_missing_vault_bucket_fails_run_once_even_with_nothing_to_do(
        buckets: dict[str, Any]) -> None:
    env = aws_env(buckets["setup"]) | {"RETENTIOND_VAULT": "s3://no-such-vault-bucket/v/"}
    r = run_cli("run", "--once", env=env)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "no-such-vault-bucket: bucket does not exist" in r.stderr


def test_webhook_can_be_turned_off(short_setup: Path) -> None:
    cfg = short_setup / "retentiond.yaml"
    cfg.write_text(cfg.read_text() + "events:\n  webhook_addr: 127.0.0.1:9465\n")
    assert load_settings(cfg, environ={}).webhook_addr == "127.0.0.1:9465"
    for off in ("off", "none"):
        s = load_settings(cfg, environ={"RETENTIOND_EVENTS_WEBHOOK_ADDR": off})
        assert s.webhook_addr is None


def test_missing_proof_bucket_fails_run_once(buckets: dict[str, Any]) -> None:
    env = aws_env(buckets["setup"]) | {"RETENTIOND_PROOFS": "s3://no-such-proof-bucket/log/"}
    r = run_cli("run", "--once", env=env)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "no-such-proof-bucket: bucket does not exist" in r.stderr


def test_a_sidecar_object_whose_recording_never_comes_is_reported_once(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock],
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    app, clock = s3_app
    c, inbox = buckets["client"], buckets["inbox"]
    caplog.set_level(logging.WARNING, logger="retentiond.service.ingest")
    put(c, inbox, "incoming/calls/+33612345678-lost.wav.json", json.dumps({
        "purpose": "quality", "subject": "+33612345678"}).encode())
    daemon = Daemon(app)
    gauge = "retentiond_inbox_orphan_sidecars"

    def turn() -> list[str]:
        daemon.ingest_ready(now=clock.now())
        return logged(caplog, "ingest.orphan_sidecar")

    assert turn() == []
    clock.advance(timedelta(minutes=61))
    (message,) = turn()
    assert f"inbox s3://{inbox}/incoming: 1 sidecar(s)" in message, message
    assert "+336" not in message and "lost" not in message  # never the file's name
    assert app.metrics.registry.get_sample_value(gauge) == 1
    assert turn() == [message]  # once
    assert keys(c, inbox) == ["incoming/calls/+33612345678-lost.wav.json"]  # left in place
    c.delete_object(Bucket=inbox, Key="incoming/calls/+33612345678-lost.wav.json")
    turn()
    assert app.metrics.registry.get_sample_value(gauge) == 0


def test_a_restarted_daemon_counts_a_sidecar_object_from_its_upload(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock],
        caplog: pytest.LogCaptureFixture) -> None:
    """The age comes from the object's LastModified, not from the process: a restart
    (a new Daemon, nothing seen before) reports an hour-old orphan at its first listing."""
    import logging

    app, clock = s3_app
    c, inbox = buckets["client"], buckets["inbox"]
    caplog.set_level(logging.WARNING, logger="retentiond.service.ingest")
    put(c, inbox, "incoming/old-lost.wav.json", json.dumps({"purpose": "quality"}).encode())
    gauge = "retentiond_inbox_orphan_sidecars"
    Daemon(app).ingest_ready(now=clock.now())
    assert app.metrics.registry.get_sample_value(gauge) == 0
    clock.advance(timedelta(minutes=61))
    Daemon(app).ingest_ready(now=clock.now())  # restarted: first listing
    (message,) = logged(caplog, "ingest.orphan_sidecar")
    assert f"inbox s3://{inbox}/incoming: 1 sidecar(s)" in message, message
    assert app.metrics.registry.get_sample_value(gauge) == 1
