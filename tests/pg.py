"""A throwaway PostgreSQL server for tests: initdb into a temp dir, listen on a unix socket
only (no TCP port to collide on), stopped and deleted afterwards. PostgreSQL refuses to run
as root, so under root the server runs as the `postgres` user (Debian's package creates it)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SEARCH = ["/usr/local/bin", "/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"]


def pg_bin(name: str) -> str:
    for d in [*SEARCH, *os.environ.get("PATH", "").split(":")]:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    raise FileNotFoundError(f"no {name} (install Debian's postgresql)")


@dataclass
class Postgres:
    base: Path
    env: dict[str, str]
    run_as: list[str]

    def stop(self) -> None:
        subprocess.run([*self.run_as, pg_bin("pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres(port: int = 5432) -> Postgres:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    base = Path(tempfile.mkdtemp(prefix="syncd-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    base.chmod(0o755)
    subprocess.run([*run_as, initdb, "-D", str(base / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    opts = f"-k {base} -p {port} -c listen_addresses='' -c fsync=off"
    subprocess.run([*run_as, pg_ctl, "-D", str(base / "data"), "-o", opts, "-l", str(base / "log"), "-w", "start"],
                   check=True, capture_output=True)
    env = {"PGHOST": str(base), "PGPORT": str(port), "PGUSER": "postgres", "PGDATABASE": "postgres"}
    return Postgres(base, env, run_as)
