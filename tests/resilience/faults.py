"""The fault schedule of a resilience run: planned from the seed, injected while the clients run.

Three faults, one after the other (their times and lengths drawn from the seed):

1. **eligibility down during issuance**: eligibility-0 is stopped (SIGTERM: connections refused)
   and eligibility-1 frozen (SIGSTOP: connections hang until the caller's peer timeout) for
   several seconds; the decisions held back for it become claimable and a few are claimed at
   once. Every claim in that window must be answered 503 `peer_unavailable` and write nothing.
2. **a vouchers process killed**: SIGKILL in the middle of requests, restarted on its port.
3. **PostgreSQL restarted**: `pg_ctl stop -m fast` or `-m immediate` (a crash: recovery from
   the WAL), down for a moment, started again; every process must come back by itself.

Each fault is printed with its time since the start of the run and kept in the history.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field

from tests.resilience.cluster import Cluster
from tests.resilience.history import Op
from tests.resilience.workload import Workload


@dataclass(frozen=True)
class PlannedFault:
    at: float  # seconds since the start of the run
    kind: str  # eligibility_outage | kill_vouchers | restart_postgres
    seconds: float  # how long the thing stays down
    target: str = ""  # the vouchers process; the shutdown mode of PostgreSQL


def plan(rng: random.Random, duration: float) -> list[PlannedFault]:
    eligibility = PlannedFault(rng.uniform(0.10, 0.16) * duration, "eligibility_outage", rng.uniform(6.0, 9.0))
    kill_at = max(rng.uniform(0.36, 0.46) * duration, eligibility.at + eligibility.seconds + 5)
    kill = PlannedFault(kill_at, "kill_vouchers", rng.uniform(0.5, 2.0), f"vouchers-{rng.randrange(2)}")
    postgres_at = max(rng.uniform(0.60, 0.70) * duration, kill.at + kill.seconds + 10)
    mode = rng.choice(["fast", "immediate"])
    return [eligibility, kill, PlannedFault(postgres_at, "restart_postgres", rng.uniform(1.0, 3.0), mode)]


@dataclass
class Injector:
    cluster: Cluster
    workload: Workload
    schedule: list[PlannedFault]
    outages: list[tuple[float, float]] = field(default_factory=list)  # eligibility fully down, from → to
    outage_claims: list[Op] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        moment = self.workload.now()
        self.workload.history.faults.append((moment, text))
        print(f"  [{moment:6.1f} s] {text}", flush=True)

    async def run(self) -> None:
        for fault in self.schedule:
            wait = fault.at - self.workload.now()
            if wait > 0:
                await asyncio.sleep(wait)
            await getattr(self, fault.kind)(fault)
            self.injected.append(fault.kind)

    async def _ready(self, names: list[str]) -> float:
        started = time.monotonic()
        await asyncio.to_thread(self.cluster.wait_ready, names)
        return time.monotonic() - started

    async def eligibility_outage(self, fault: PlannedFault) -> None:
        self.note(f"eligibility down for {fault.seconds:.1f} s: eligibility-0 stopped (SIGTERM), eligibility-1 frozen")
        await asyncio.to_thread(self.cluster.kill, "eligibility-0", signal.SIGTERM)
        self.cluster.pause("eligibility-1")
        down_from = self.workload.now()
        released = self.workload.release_reserve()
        self.note(f"{len(released)} decisions held back for the outage are claimable now; claiming 4 at once")
        claims: asyncio.Task[list[Op]] = asyncio.create_task(self.workload.claims_now(released[:4]))
        await asyncio.sleep(fault.seconds)
        self.outages.append((down_from, self.workload.now()))
        self.cluster.resume("eligibility-1")
        await asyncio.to_thread(self.cluster.start, "eligibility-0")
        self.note(
            f"eligibility-1 resumed, eligibility-0 restarted: ready after {await self._ready(['eligibility-0']):.1f} s"
        )
        self.outage_claims = await claims

    async def kill_vouchers(self, fault: PlannedFault) -> None:
        self.note(f"SIGKILL {fault.target}")
        await asyncio.to_thread(self.cluster.kill, fault.target, signal.SIGKILL)
        await asyncio.sleep(fault.seconds)
        await asyncio.to_thread(self.cluster.start, fault.target)
        ready = await self._ready([fault.target])
        self.note(f"{fault.target} restarted after {fault.seconds:.1f} s down: ready after {ready:.1f} s")

    async def restart_postgres(self, fault: PlannedFault) -> None:
        self.note(f"PostgreSQL: pg_ctl stop -m {fault.target}")
        await asyncio.to_thread(self.cluster.stop_database, fault.target)
        await asyncio.sleep(fault.seconds)
        started = time.monotonic()
        await asyncio.to_thread(self.cluster.server.start)
        self.note(
            f"PostgreSQL started again after {fault.seconds:.1f} s down (up in {time.monotonic() - started:.1f} s)"
        )
        self.note(f"all six processes ready again after {await self._ready(list(self.cluster.processes)):.1f} s")
