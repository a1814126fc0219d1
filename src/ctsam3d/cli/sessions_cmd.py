"""``ctsam3d sessions list|clear``: the web server's stored sessions, for the operator.

Works on the server's state folder (``--state-dir``, default as ``ctsam3d serve``), with or
without the server running: a running server answers 404 for a session removed here.

    ctsam3d sessions list                       # id, image, objects, size, idle time, expiry
    ctsam3d sessions list --json
    ctsam3d sessions clear --expired            # what the server's own sweep would remove
    ctsam3d sessions clear --idle 2             # idle for at least 2 hours
    ctsam3d sessions clear ID [ID ...]          # these sessions
    ctsam3d sessions clear --all                # everything (sessions and viewer copies)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import InputError

NAME = "sessions"
HELP = "List or clear the web server's stored sessions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .serve_cmd import default_state_dir

    parser.add_argument("action", choices=["list", "clear"], help="list the sessions, or remove some")
    parser.add_argument("ids", nargs="*", metavar="ID", help="clear: session ids to remove")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help=f"the server's state folder (default {default_state_dir()})")
    parser.add_argument("--session-ttl", type=float, default=24.0, metavar="HOURS",
                        help="idle expiry the server runs with (default 24), for 'expires' and --expired")
    parser.add_argument("--expired", action="store_true", help="clear: sessions past their expiry")
    parser.add_argument("--idle", type=float, default=None, metavar="HOURS", help="clear: sessions idle at least HOURS")
    parser.add_argument("--all", action="store_true", help="clear: every session")
    parser.add_argument("--json", action="store_true", help="list: machine-readable output")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def run(args: argparse.Namespace) -> int:
    from ..server.images import SharedImages, dir_bytes
    from ..server.store import remove_session_dir, scan_sessions
    from .serve_cmd import default_state_dir

    state = args.state_dir or default_state_dir()
    if args.state_dir is not None and not state.is_dir():
        raise InputError(f"--state-dir {state}: not a folder")
    if not args.session_ttl > 0:
        raise InputError("--session-ttl: must be positive (hours)")
    root = state / "sessions"
    views = SharedImages(state / "views")
    entries = scan_sessions(root, args.session_ttl * 3600.0)
    now = time.time()

    if args.action == "list":
        if args.ids or args.expired or args.all or args.idle is not None:
            raise InputError("list: takes no ids, --expired, --idle or --all (those select what 'clear' removes)")
        if args.json:
            print(json.dumps({"sessions": [e.to_json() for e in entries],
                              "views_bytes": dir_bytes(views.root)}, indent=1))
            return 0
        total = sum(e.bytes for e in entries) + dir_bytes(views.root)
        print(f"{len(entries)} session(s) in {root}, {total / 2**20:.1f} MiB with the shared viewer copies")
        if entries:
            print(f"{'session id':<26} {'kind':<9} {'image':<28} {'objects':>7} {'MiB':>8} {'idle':>8} {'expires in':>10}")
        for e in reversed(entries):  # most recently used first
            left = e.expires_at - now
            print(f"{e.session_id:<26} {e.kind:<9} {e.source[:28]:<28} {e.objects:>7} {e.bytes / 2**20:>8.1f} "
                  f"{_age(now - e.last_access):>8} {('expired' if left < 0 else _age(left)):>10}")
        return 0

    chosen = [args.all, args.expired, args.idle is not None, bool(args.ids)]
    if sum(chosen) != 1:
        raise InputError("clear: give exactly one of session ids, --expired, --idle HOURS or --all")
    if args.ids:
        known = {e.session_id for e in entries}
        missing = [i for i in args.ids if i not in known]
        if missing:
            raise InputError(f"clear: no session {missing[0]!r} in {root}")
        selected = [e for e in entries if e.session_id in set(args.ids)]
    elif args.all:
        selected = entries
    elif args.expired:
        selected = [e for e in entries if e.expires_at < now]
    else:
        if args.idle < 0:
            raise InputError("--idle: must be >= 0 hours")
        selected = [e for e in entries if now - e.last_access >= args.idle * 3600.0]
    freed = 0
    for e in selected:
        remove_session_dir(root, e.session_id)
        freed += e.bytes
    kept = {e.image_key for e in entries if e not in selected and e.image_key}
    freed += views.remove_unused(kept)
    print(f"removed {len(selected)} session(s), {freed / 2**20:.1f} MiB; {len(entries) - len(selected)} left")
    return 0
