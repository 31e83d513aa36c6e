"""The ``backup`` and ``restore`` commands of ``python -m apiserver``: their arguments and what they print
(the archive itself is ``database/backup.py``)."""

from __future__ import annotations

import argparse
import sys

from apiserver.config import Config


def add_backup_parsers(commands: argparse._SubParsersAction) -> None:
    backup = commands.add_parser(
        "backup", help="write a consistent archive of a server (database and files) while it runs",
        description="Joins the server running on the data folder (or database.uri), or starts its database when "
                    "none runs, and writes one archive of every collection and the file store. Every write the "
                    "server acknowledged before the backup began is in it; on the embedded database the archive "
                    "is one snapshot. The archive holds secrets (the token secret, the admin keys): keep it private.")
    backup.add_argument("--to", required=True, metavar="FILE",
                        help="archive to write (tar; gzip-compressed when it ends in .gz or .tgz)")
    restore = commands.add_parser(
        "restore", help="fill an empty data folder (or empty database.uri database) from a backup archive",
        description="Restores a backup archive into the data folder given by --data-dir, which must be new or "
                    "empty (with database.uri: into that database, which must be empty). Nothing is left behind "
                    "when the archive is damaged. Start the server on the folder afterwards.")
    restore.add_argument("--from", dest="source", required=True, metavar="FILE", help="archive to restore")


def _phases(done) -> str:
    return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in done.phases.items())


def run_backup(config: Config, args: argparse.Namespace) -> int:
    from apiserver.database.backup import BackupError, backup

    try:
        done = backup(config, args.to)
    except BackupError as exc:
        print(f"apiserver backup: {exc}", file=sys.stderr)
        return 1
    mb = done.archive_bytes / 1e6
    print(f"backup written to {args.to}: {done.collections} collections, {done.documents:,} documents, "
          f"{done.files:,} files ({done.file_bytes / 1e6:,.1f} MB), archive {mb:,.1f} MB in {done.seconds:.1f}s"
          f"{' (one database snapshot)' if done.snapshot else ''}; {_phases(done)}")
    return 0


def run_restore(config: Config, args: argparse.Namespace) -> int:
    from apiserver.database.backup import BackupError, restore

    try:
        done, manifest = restore(config, args.source)
    except BackupError as exc:
        print(f"apiserver restore: {exc}", file=sys.stderr)
        return 1
    where = config.get("database.uri") and f"database {config['database.name']!r}" or \
        config["database.embedded.data_dir"]
    print(f"restored {args.source} (taken {manifest.get('snapshot_at')}, server {manifest.get('server_version')}) "
          f"into {where}: {done.collections} collections, {done.documents:,} documents, {done.files:,} files "
          f"({done.file_bytes / 1e6:,.1f} MB) in {done.seconds:.1f}s; {_phases(done)}")
    return 0
