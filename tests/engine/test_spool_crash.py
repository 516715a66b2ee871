"""Crash safety of the spooled file outbox: a dispatching process killed with SIGKILL after a spool is
written and before the ledger records it (or while the spool is being written) neither loses nor doubles a
message once dispatch runs again: the rows left in flight are sent again with their keys, the keys already
spooled are answered ``sent`` without a second copy, and the rest are spooled once."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._outbox import OutboxAdapter, file_stem
from orchestrator.channels._spool import spool_paths, spooled_messages
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.store import open_store, sqlite_url
from orchestrator.store._customers import upsert_customers
from orchestrator.testing import T0, write_files

CUSTOMERS = 2500  # three dispatch batches of at most 1000
JOURNEY = """\
id: hello
version: 1
entry:
  segment: cohort == "x"
holdout: 0
steps:
  - id: greet
    send: {channel: sms, template: m.txt}
"""

# Runs in a child process: one tick (entry, stepping, dispatch) through a spooled outbox that kills the
# process with SIGKILL at the chosen point of the second spool.
CHILD = """\
import os, signal, sys
from pathlib import Path
from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._outbox import OutboxAdapter
from orchestrator.clock import SimulatedClock
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.store import open_store, sqlite_url
from orchestrator.testing import T0

root, where = Path(sys.argv[1]), sys.argv[2]
spools = []

class Dying(OutboxAdapter):
    def _send_spooled(self, messages, width=1):
        spools.append(len(messages))
        if where == "before_rename" and len(spools) == 2:
            real = os.replace
            def die(src, dst):
                os.kill(os.getpid(), signal.SIGKILL)
            os.replace = die
        results = super()._send_spooled(messages, width)
        if where == "after_spool" and len(spools) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # spooled, fsynced; the ledger never hears of it
        return results

store = open_store(sqlite_url(root / "s.db"))
workspace = load_workspace([root / "journeys"])
router = ChannelRouter([Dying(root / "outbox", layout="spool")])
Engine(store, workspace, router, SimulatedClock(T0)).tick()
print("not killed")
"""


def statuses(db: Path) -> collections.Counter[str]:
    store = open_store(sqlite_url(db))
    with store.connect() as conn:
        rows = conn.execute(text("SELECT status FROM messages")).scalars().all()
    store.dispose()
    return collections.Counter(str(s) for s in rows)


@pytest.mark.parametrize("where", ["after_spool", "before_rename"])
def test_killed_between_spool_and_ledger_loses_and_doubles_nothing(tmp_path: Path, where: str) -> None:
    write_files(tmp_path, {"journeys/hello.yaml": JOURNEY, "templates/m.txt": "Hi {{ customer.id }}"})
    store = open_store(sqlite_url(tmp_path / "s.db"))
    with store.begin() as conn:
        upsert_customers(
            conn,
            [
                {"id": f"c{i}", "cohort": "x", "phone": f"+1415555{i:04d}", "consent_sms": True}
                for i in range(CUSTOMERS)
            ],
            now_us=to_us(T0),
        )
    store.dispose()
    (tmp_path / "child.py").write_text(CHILD)
    run = subprocess.run(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path), where],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stdout + run.stderr
    before = statuses(tmp_path / "s.db")
    # The first batch is recorded; the second was marked in flight and (after_spool) spooled.
    assert before == {"sent": 1000, "sending": 1000, "queued": 500}
    spooled_before = len(list(spooled_messages(tmp_path / "outbox")))
    assert spooled_before == (2000 if where == "after_spool" else 1000)
    assert len(list((tmp_path / "outbox" / "spool" / "sms").glob(".tmp-*"))) == (where == "before_rename")

    store = open_store(sqlite_url(tmp_path / "s.db"))
    workspace = load_workspace([tmp_path / "journeys"])
    router = ChannelRouter([OutboxAdapter(tmp_path / "outbox", layout="spool")])
    report = Engine(store, workspace, router, SimulatedClock(T0)).dispatch()  # what a restart does first
    assert (report.requeued, report.delivered) == (1000, 1500)
    with store.connect() as conn:
        ledger = conn.execute(text("SELECT idempotency_key, status, provider_id FROM messages")).all()
    store.dispose()
    spooled = collections.Counter(m.key for m in spooled_messages(tmp_path / "outbox"))
    assert len(ledger) == CUSTOMERS and {status for _, status, _ in ledger} == {"sent"}
    assert spooled == collections.Counter({key: 1 for key, _, _ in ledger})  # each message once
    assert {provider_id for _, _, provider_id in ledger} == {
        f"{file_stem(key)}.txt" for key, _, _ in ledger
    }  # the provider id of a retried key is the one of its spooled copy
    assert len(spool_paths(tmp_path / "outbox")) == 3  # nothing spooled twice: the retry wrote no spool
