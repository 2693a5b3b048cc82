"""retentiond's init container: copy the key files out of the Secret volume into a private
folder (retentiond refuses key files that group or others can read, and a Secret volume
with an fsGroup is group-readable), then create the folders of the stores kept on the
state volume; and the events webhook's token, likewise, when one is given. Usage:
prepare.py KEYS_SOURCE KEYS_DIR '["/folder", ...]' [TOKEN_SOURCE TOKEN_FILE]
"""

import json
import os
import sys
from pathlib import Path


def main() -> int:
    source, target, folders = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    os.umask(0o077)
    target.mkdir(mode=0o700, exist_ok=True)
    target.chmod(0o700)
    copied = 0
    for f in sorted(source.iterdir()):
        if f.name.startswith(".") or not f.is_file():  # the Secret volume's ..data links
            continue
        dest = target / f.name
        dest.write_bytes(f.read_bytes())
        dest.chmod(0o600)
        copied += 1
    if not copied:
        print(f"retentiond-prepare: no key file in {source}", file=sys.stderr)
        return 2
    # `retentiond keys rotate` refuses to run on this folder: a key made here would be
    # lost with the pod, and every recording re-wrapped under it with it
    marker = target / "COPY-OF-SECRET"
    marker.write_text("made by the chart's init container from the keys Secret at pod "
                      "start; changes here are lost at the next restart\n")
    marker.chmod(0o600)
    if len(sys.argv) > 5:  # the webhook token: a 0600 copy, as retentiond requires
        token_source, token_file = Path(sys.argv[4]), Path(sys.argv[5])
        token_file.write_bytes(token_source.read_bytes())
        token_file.chmod(0o600)
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)
    print(f"retentiond-prepare: {copied} key files in {target}; folders: {', '.join(folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
