"""What one run of the bench is made of: the sizes of its workloads and where it runs."""

from dataclasses import dataclass, field
from pathlib import Path

from bench.database import BenchDatabase
from bench.peer import PgQueuerPeer


@dataclass(frozen=True)
class Sizes:
    """The workloads of issue 4, full size or a smoke-test size (--quick)."""

    runs: int = 3
    enqueue_single: int = 5_000
    enqueue_bulk: int = 20_000
    drain_tasks: int = 20_000
    drain_layouts: tuple[tuple[int, int], ...] = ((1, 8), (2, 4))  # (processes, workers each)
    latency_tasks: int = 200
    latency_gap: float = 0.020
    latency_workers: int = 8
    scale_history: int = 1_000_000
    scale_blocked: int = 8_000
    scale_curve: tuple[int, ...] = (1, 2, 4, 8, 16)
    ceiling_clients: int = 8
    ceiling_seconds: int = 20
    # Pending rows put in the table before a claiming pgbench run: more than it can drain.
    ceiling_fill_one: int = 300_000
    ceiling_fill_batch: int = 1_000_000


FULL = Sizes()
QUICK = Sizes(
    runs=1,
    enqueue_single=200,
    enqueue_bulk=1_000,
    drain_tasks=300,
    latency_tasks=30,
    scale_history=10_000,
    scale_blocked=100,
    scale_curve=(1, 8, 16),
    ceiling_seconds=2,
    ceiling_fill_one=40_000,
    ceiling_fill_batch=100_000,
)


@dataclass
class Bench:
    """The run's context, handed to every workload."""

    root: Path  # the checkout whose code is measured (manage.py runs from here)
    database: BenchDatabase
    env: dict[str, str]  # the environment of the bench's Django subprocesses
    log_dir: Path
    sizes: Sizes
    results: dict = field(default_factory=dict)  # workload name -> its figures, as they come
    # pgqueuer, measured beside ours in ENQUEUE, DRAIN and LATENCY (None: --no-peers, --quick);
    # its figures go to results["pgqueuer"][workload name].
    peer: PgQueuerPeer | None = None

    def peer_results(self, workload: str, figures: dict) -> None:
        self.results.setdefault("pgqueuer", {})[workload] = figures
