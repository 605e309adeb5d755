#!/usr/bin/env python3
"""Expand a .charm as Juju does (charmarchive.go ExpandTo): each entry gets exactly its Unix
mode bits when the archive was written on Unix (else 0644 files, 0755 dirs), names must be
root-relative. Usage: unpack.py ARCHIVE DEST"""

import os
import stat
import sys
import zipfile


def main(archive, dest):
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            name = info.filename
            if name.startswith("/") or name.startswith("./") or ".." in name.split("/"):
                sys.exit("unpack: entry %r is not root-relative" % name)
            mode = (info.external_attr >> 16) & 0o7777 if info.create_system == 3 else 0
            target = os.path.join(dest, name)
            if name.endswith("/"):
                os.makedirs(target, exist_ok=True)
                os.chmod(target, mode or 0o755)
                continue
            kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
            if kind == stat.S_IFLNK:
                sys.exit("unpack: %s is a symlink; this charm ships none" % name)
            os.makedirs(os.path.dirname(target) or dest, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    dst.write(chunk)
            os.chmod(target, mode or 0o644)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: unpack.py ARCHIVE DEST")
    main(sys.argv[1], sys.argv[2])
