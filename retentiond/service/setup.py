"""``retentiond init DIR``: a complete working embedded setup (SPEC section 3).

Never overwrites existing keys, policies or configuration: running it again on an
existing setup only adds what is missing.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import retentiond
from retentiond.adapters.localfs_proofs import FileProofStore
from retentiond.clock import SystemClock
from retentiond.crypto.keys import create_key_files
from retentiond.crypto.signing import NoteSigner, NoteVerifier, generate_signing_key
from retentiond.errors import ConfigError, StorageError
from retentiond.service.prooflog import ProofLog
from retentiond.service.wiring import SIGNING_KEY_FILE, VERIFIER_KEY_FILE

CONFIG_NAME = "retentiond.yaml"

CONFIG_TEMPLATE = """\
# retentiond configuration, created by 'retentiond init'. Every key is documented in
# README.md, section "Configuration". Relative paths are resolved against this file's
# folder, so this setup can be moved as a whole.
inbox:                      # drop folders watched for new recordings
  - inbox/
vault: vault/               # encrypted store (ciphertext only)
proofs: proofs/             # deletion-proof log (C2SP tlog-tiles + signed checkpoint)
catalog: sqlite:state/catalog.db   # relative; absolute: sqlite:///srv/.../catalog.db
policies: policies/         # retention policy pack (YAML)
state: state/               # catalog, audit log, locks
keys:
  provider: file
  dir: keys/                # KEK, pseudonym and sampling keys, proof-log signing key (0600)
proof_log:
  origin: {origin}          # log name; also the signing key's name
ingest:
  settle_seconds: 2         # a file must stay unchanged this long before ingest
  sidecar_wait_seconds: 30  # how long a recording waits for its NAME.EXT.json sidecar
  workers: 8                # recordings ingested at a time (README, "Configuration")
sweep:
  interval_seconds: 60      # enforcement pass at least this often (sooner when one is due)
metrics_addr: 127.0.0.1:9464  # /metrics, /healthz, /readyz ('off' to disable)
log_level: info
residency:                  # where each store is; outside the EU/EEA and the adequacy list
                            # a store needs a transfer safeguard (docs/residency.md)
  local_country: FR         # ISO 3166 code of the local folders' country (Norway: "NO")
  # stores:                 # per store (inbox, vault, proofs or its location as written)
  #   "s3://backup-us/": {{region: us-east-1, transfer_safeguard: standard-contractual-clauses}}
# controllers:              # who the recordings are kept for, and its processor (e.g. an
#   - name: Banque Exemple SA   # outsourced contact centre); recordings carry both names
#     processor: {{name: CallCo SARL, country: MA,
#                 transfer_safeguard: standard-contractual-clauses}}
#     inboxes: [inbox/]     # default: every inbox
"""


@dataclass(frozen=True)
class InitResult:
    config: Path
    created: tuple[Path, ...]
    verifier_key: str


def packaged_policies() -> Path:
    """The default policy pack shipped with retentiond."""
    here = Path(retentiond.__file__).resolve().parent
    for candidate in (here / "data" / "policies", here.parent / "policies"):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    raise ConfigError("the default policy pack is missing from this installation")


def _origin_for(folder: Path) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-") or "setup"
    return f"retentiond.local/{slug}-{secrets.token_hex(4)}/deletions"


def _write_new(path: Path, data: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def init_setup(folder: Path) -> InitResult:
    """Create (or complete) an embedded setup in ``folder``."""
    created: list[Path] = []
    try:
        for sub, mode in (("", 0o755), ("inbox", 0o750), ("vault", 0o700),
                          ("proofs", 0o755), ("state", 0o700), ("policies", 0o755),
                          ("keys", 0o700)):
            path = folder / sub
            if not path.exists():
                path.mkdir(mode=mode, parents=True)
                os.chmod(path, mode)
                created.append(path)
        for src in sorted(packaged_policies().glob("*.yaml")):
            dst = folder / "policies" / src.name
            if not dst.exists():
                shutil.copyfile(src, dst)
                created.append(dst)
        keys = folder / "keys"
        created.extend(create_key_files(keys, now=SystemClock().now()))
        skey, vkey_path = keys / SIGNING_KEY_FILE, keys / VERIFIER_KEY_FILE
        config = folder / CONFIG_NAME
        if skey.exists() and vkey_path.exists():
            vkey = vkey_path.read_text(encoding="utf-8").strip()
            origin = NoteVerifier.from_text(vkey).name
        elif skey.exists() or vkey_path.exists():
            raise ConfigError(
                f"{keys}: only one of {SIGNING_KEY_FILE} and {VERIFIER_KEY_FILE} exists; "
                "restore the other from backup (init never replaces keys)"
            )
        else:
            origin = _origin_for(folder)
            skey_text, vkey = generate_signing_key(origin)
            _write_new(skey, skey_text + "\n", 0o600)
            _write_new(vkey_path, vkey + "\n", 0o644)
            created.extend([skey, vkey_path])
        if not config.exists():
            _write_new(config, CONFIG_TEMPLATE.format(origin=origin), 0o644)
            created.append(config)
        if not (folder / "proofs" / "checkpoint").exists():  # an empty, verifiable log
            signer = NoteSigner.from_text(skey.read_text(encoding="utf-8").strip())
            ProofLog(FileProofStore(folder / "proofs"), origin=origin,
                     verifier=signer.verifier(), signer=signer).initialize()
            created.append(folder / "proofs" / "checkpoint")
    except OSError as e:
        raise StorageError(f"{folder}: cannot create setup: {e.strerror} ({e.filename})") from None
    return InitResult(config=config, created=tuple(created), verifier_key=vkey)
