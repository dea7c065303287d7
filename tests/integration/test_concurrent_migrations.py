"""Several processes starting at once on one fresh SQLite file (``serve --workers``, or
replicas on one volume) all migrate it without tripping over each other."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

MIGRATE_AT = """
import asyncio, sys, time
from pathlib import Path
from modelway.store.database import async_url, create_engine, upgrade

async def main(folder: str, at: float) -> None:
    engine = create_engine(async_url(None, Path(folder)))
    while time.time() < at:  # all start together
        time.sleep(0.001)
    await upgrade(engine)
    await engine.dispose()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def test_six_processes_migrate_one_fresh_sqlite_file(tmp_path: Path) -> None:
    at = time.time() + 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_AT, str(tmp_path), str(at)], stderr=subprocess.PIPE
        )
        for _ in range(6)
    ]
    failures = [p.stderr.read().decode() for p in procs if p.wait(timeout=60) != 0]
    assert failures == []
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'modelway.db'}")
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert len(versions) == 1
