"""A throwaway PostgreSQL server (Debian's `postgresql` package) on loopback for one test: its own
cluster in a temporary folder, trust authentication on 127.0.0.1 only, stopped and removed after.

`make test` installs the package when it is missing (`make postgres`). PostgreSQL refuses to run
as root, so under root the cluster belongs to the package's `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager

import portpicker


def server_bin() -> str | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@contextmanager
def postgres_server(database: str = "airflow", user: str = "airflow"):
    """Yields the SQLAlchemy URL of a fresh database on a server started for the caller."""
    bindir = server_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL's server is not installed (Debian: postgresql)")
    folder = tempfile.mkdtemp(prefix="mimo-postgres-")
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(folder, "data")
    port = portpicker.pick_unused_port()  # as the Beam services' (conftest._beam_service)

    def run(*args: str) -> None:
        proc = subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    pg_ctl = os.path.join(bindir, "pg_ctl")
    started = False
    try:
        run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", user, "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
        log = os.path.join(folder, "server.log")
        run(pg_ctl, "-D", data, "-l", log, "-o", options, "-w", "start")
        started = True
        createdb = os.path.join(bindir, "createdb")
        run(createdb, "-h", "127.0.0.1", "-p", str(port), "-U", user, database)
        yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{database}"
    finally:
        if started:
            stop = [*run_as, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"]
            subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
