"""Profiles (TOML) plus command-line overrides -> the list of cells to run.

A cell is one point of the matrix (model x protocol x connections x payload x mode x
backlog x work x idle x slow) at one repeat. Cells run in a shuffled order inside each repeat,
so that slow drift of the machine (thermal, noisy neighbours) does not favour one model.

A profile may add grids (`[[grid]]` tables): further products of the axes, each naming
the axes it changes, whose cells run in the same run beside the main product's (a cell
in both runs once). The quick profile's idle sweep is one: a few models at 10
connections beside 0 to 5,000 idle ones, which the main product (every family at 1 to
1,000 connections) would multiply out of a few minutes. Axis flags on the command line
describe the matrix wanted, so with any of them the grids are left out.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from itertools import product
from pathlib import Path
from typing import Any

from bench.analysis.curves import parse_target
from bench.analysis.search import MAX_STEPS
from bench.record import CellKey
from bench.run.external import External, parse_external
from bench.settings import ALLOCATOR_POLICIES
from bench.settings import MatrixError as MatrixError  # its home; caught from here too
from clients.engine.hold import DEFAULT_INTERVAL_MS, MAX_HOLD_PAYLOAD, MAX_INTERVAL_MS
from clients.options import ARRIVALS
from clients.target import is_loopback
from clients.wire import MAX_PAYLOAD
from common.cli import suggest
from servers import MODELS, SERVERS
from servers.protocol import DEFAULT_MAX_FRAME
from servers.work import parse_work

# A bench cell runs the servers with their default frame limit: a larger payload would
# only give failed cells.
PAYLOAD_LIMIT = min(DEFAULT_MAX_FRAME, MAX_PAYLOAD)

PROFILE_DIR = Path(__file__).resolve().parents[1] / "profiles"
MODES = ("persistent", "per-request")
DRIVERS = ("loadgen", "locust")
BENCH_PROTOCOLS = ("echo", "http")
IDLE_MODES = ("warm", "silent")
SLOW_MODES = ("sender", "reader")  # clients.holder's slow-sender and slow-reader
# The axes a grid may set; every other setting (repeats, duration, ...) is the run's.
GRID_AXES = (
    "models", "protocols", "connections", "payloads", "modes", "backlogs", "works", "idle",
    "idle_mode", "slow", "slow_mode",
)  # fmt: skip


@dataclass(frozen=True)
class Cell:
    key: CellKey
    repeat: int


@dataclass(frozen=True)
class Grid:
    """A further product of the axes, run beside the main one: the axes it names (not
    None) replace the main product's, the others are the main product's."""

    models: tuple[str, ...] | None = None
    protocols: tuple[str, ...] | None = None
    connections: tuple[int, ...] | None = None
    payloads: tuple[int, ...] | None = None
    modes: tuple[str, ...] | None = None
    backlogs: tuple[int, ...] | None = None
    works: tuple[str, ...] | None = None
    idle: tuple[int, ...] | None = None
    idle_mode: str | None = None
    slow: tuple[int, ...] | None = None
    slow_mode: str | None = None

    def axes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in GRID_AXES if getattr(self, name) is not None}


@dataclass(frozen=True)
class Matrix:
    profile: str
    models: tuple[str, ...]
    protocols: tuple[str, ...] = ("echo",)
    connections: tuple[int, ...] = (1, 10, 100, 1000)
    payloads: tuple[int, ...] = (64,)
    modes: tuple[str, ...] = ("persistent",)
    backlogs: tuple[int, ...] = (0,)
    works: tuple[str, ...] = ("",)
    repeats: int = 1
    duration: float = 2.0
    warmup: float = 0.5
    driver: str = "loadgen"
    seed: int = 0
    inject_delay_ns: int = 0  # extra server CPU per request, outside the cell key
    # every server's allocator policy (bench.settings.ALLOCATOR_POLICIES)
    allocator: str = "warm"
    description: str = ""
    # offered load (bench.analysis.curves): open-loop rates in req/s, and fractions of the
    # capacity a short closed-loop probe finds; either adds open-loop cells
    rates: tuple[float, ...] = ()
    sweep: tuple[float, ...] = ()
    closed: bool = True  # with rates or a sweep: keep the closed-loop cells too
    arrivals: str = "poisson"  # of the open-loop cells
    slo: tuple[str, ...] = ()  # latency targets for the capacity figures, e.g. "p99:1ms"
    # search each closed-loop cell's capacity at each target (bench.analysis.search), within a
    # budget of open-loop steps per search
    search: bool = False
    search_steps: int = MAX_STEPS
    # locust workers started by hand (docs/locust.md): each cell's driver runs only a
    # master, bound to this address, that waits for this many; 0: locust runs here
    locust_workers: int = 0
    locust_master_host: str = "127.0.0.1"
    locust_master_port: int = 5557
    # where the servers the bench starts listen: remote locust workers need an address
    # they reach (not loopback: allow_remote)
    server_host: str = "127.0.0.1"
    # the servers' interpreters as an axis (bench.run.interpreters): "3.12", "3.13t" or a
    # path, each with its own environment; () runs them under the bench's own
    pythons: tuple[str, ...] = ()
    # servers someone else started (bench.run.external): "NAME=HOST:PORT[,pid=PID]", each
    # one more model line named NAME; a non-loopback one needs allow_remote
    externals: tuple[str, ...] = ()
    allow_remote: bool = False
    # the reply the external servers' `GET /` must give (0 / "": sockbench's 200 and body);
    # the models and reference servers always answer sockbench's
    expect_status: int = 0
    expect_body: str = ""
    # idle connections held beside each cell's active ones (bench.run.idle, clients.holder),
    # an axis: (0,) holds none and leaves every cell as it was; "warm" ones send one
    # request first, "silent" ones never speak
    idle: tuple[int, ...] = (0,)
    idle_mode: str = "warm"
    # slow connections beside each cell's active ones (bench.run.slow, docs/slow.md), an
    # axis: (0,) has none and leaves every cell as it was; "sender" ones send each request
    # a byte at a time, "reader" ones read each reply so, a byte per slow_interval_ms
    slow: tuple[int, ...] = (0,)
    slow_mode: str = "sender"
    slow_interval_ms: float = DEFAULT_INTERVAL_MS
    # processes (prefork) or pool threads (threadpool) for the models that take
    # `--workers`; 0: each model's default. Enough prefork processes hold 100,000
    # connections under a per-process descriptor limit (the c100k profile, docs/idle.md)
    workers: int = 0
    # further products of the axes, run beside this one (Grid; the profile's [[grid]])
    grids: tuple[Grid, ...] = ()

    def __post_init__(self) -> None:
        try:
            outside = {e.name: e for e in map(parse_external, self.externals)}
        except ValueError as exc:
            raise MatrixError(str(exc)) from None
        unknown = next((m for m in self.models if m not in SERVERS and m not in outside), "")
        check = [
            (not self.models, "no models selected"),
            (
                bool(unknown),
                f"unknown model {unknown!r}{suggest(unknown, SERVERS)}; known: "
                f"{', '.join(SERVERS)}",
            ),
            (
                bool(set(outside) & set(SERVERS)) or len(outside) < len(self.externals),
                "each --external needs a name of its own, not a model's",
            ),
            (
                self.expect_status != 0 and not 200 <= self.expect_status <= 599,
                f"expect-status {self.expect_status}: a final HTTP status, 200 to 599, as the "
                "load generator takes it",
            ),
            (
                bool(self.expect_status or self.expect_body) and self.driver != "loadgen",
                "expect-status and expect-body need the loadgen driver",
            ),
            (
                not self.allow_remote and not is_loopback(self.server_host),
                f"server host {self.server_host} is not a loopback address "
                "(--allow-remote to serve on it)",
            ),
            (
                any(p not in BENCH_PROTOCOLS for p in self.protocols),
                f"protocols must be among {BENCH_PROTOCOLS} (line is for people, not load)",
            ),
            (any(m not in MODES for m in self.modes), f"modes must be among {MODES}"),
            (self.driver not in DRIVERS, f"driver must be one of {DRIVERS}"),
            (not self.connections or min(self.connections) < 1, "connections must be >= 1"),
            (not self.payloads or min(self.payloads) < 0, "payloads must be >= 0"),
            (
                max(self.payloads, default=0) > PAYLOAD_LIMIT,
                f"payloads must be at most {PAYLOAD_LIMIT:,} bytes: the servers' frame "
                "limit (--max-frame), within the load generator's",
            ),
            (min(self.backlogs) < 0, "backlogs must be >= 0 (0: the system maximum)"),
            (not self.idle or min(self.idle) < 0, "idle must be >= 0 connections"),
            (self.idle_mode not in IDLE_MODES, f"idle-mode must be one of {IDLE_MODES}"),
            (not self.slow or min(self.slow) < 0, "slow must be >= 0 connections"),
            (self.workers < 0, "workers must be >= 0 (0: each model's default)"),
            (self.slow_mode not in SLOW_MODES, f"slow-mode must be one of {SLOW_MODES}"),
            (
                not 0 < self.slow_interval_ms <= MAX_INTERVAL_MS,
                f"slow-interval-ms must be above 0 and at most {MAX_INTERVAL_MS:g}",
            ),
            (
                max(self.slow, default=0) > 0 and max(self.payloads, default=0) > MAX_HOLD_PAYLOAD,
                f"slow connections send the cells' payload: at most {MAX_HOLD_PAYLOAD:,} "
                "bytes with --slow",
            ),
            (
                max(self.slow, default=0) > 0 and bool(self.expect_status or self.expect_body),
                "slow connections check sockbench's replies: no --expect-status or "
                "--expect-body with --slow",
            ),
            (self.repeats < 1, "repeats must be >= 1"),
            (self.inject_delay_ns < 0, "inject-delay-ns must be >= 0"),
            (
                self.allocator not in ALLOCATOR_POLICIES,
                f"allocator must be one of {', '.join(ALLOCATOR_POLICIES)}",
            ),
            (self.duration <= 0 or self.warmup < 0, "duration must be > 0 and warmup >= 0"),
            (
                any(not (r > 0 and math.isfinite(r)) for r in self.rates),
                "rates must be positive numbers of requests per second",
            ),
            (
                any(not (f > 0 and math.isfinite(f)) for f in self.sweep)
                or list(self.sweep) != sorted(set(self.sweep)),
                "sweep must be increasing fractions of the capacity, each > 0",
            ),
            (self.arrivals not in ARRIVALS, f"arrivals must be one of {ARRIVALS}"),
            (
                bool(self.rates or self.sweep or self.search) and self.driver != "loadgen",
                "rates, sweeps and searches need the loadgen driver "
                "(locust paces users, it is no open loop)",
            ),
            (self.search and not self.slo, "a search needs latency targets (--slo p99:1ms ...)"),
            (
                self.search and bool(self.rates or self.sweep),
                "a search picks its own rates: no --rates or --sweep with it",
            ),
            (self.search_steps < 3, "search-steps must be >= 3 (bracket, bisect, re-test)"),
            (self.locust_workers < 0, "locust-workers must be >= 0"),
            (
                self.locust_workers > 0 and self.driver != "locust",
                "locust-workers needs the locust driver (--driver locust)",
            ),
            (
                not 0 < self.locust_master_port < 65536,
                "locust-master-port must be in 1-65535",
            ),
            (
                self.locust_workers > 0
                and not self.allow_remote
                and not is_loopback(self.locust_master_host),
                f"locust master host {self.locust_master_host} is not a loopback address; "
                "pass --allow-remote to let workers on other machines connect",
            ),
        ]
        for failed, message in check:
            if failed:
                raise MatrixError(message)
        for work in self.works:
            try:
                parse_work(work)
            except ValueError as exc:
                raise MatrixError(str(exc)) from None
        for target in self.slo:
            try:
                parse_target(target)
            except ValueError as exc:
                raise MatrixError(str(exc)) from None

    def external(self, name: str) -> External | None:
        """The external server named `name`, or None for a model or reference server."""
        for spec in self.externals:
            if (external := parse_external(spec)).name == name:
                return external
        return None

    def python_axis(self, model: str) -> tuple[str, ...]:
        """The interpreters a model line runs under: the --pythons for our models and
        Python reference servers, none for nginx or an external server."""
        server = SERVERS.get(model)
        in_python = server is not None and getattr(server, "python", True)
        return self.pythons if self.pythons and in_python else ("",)

    def products(self) -> tuple[Matrix, ...]:
        """The main product and each grid's, as matrices of their own (checked)."""
        return (self, *(replace(self, grids=(), **grid.axes()) for grid in self.grids))

    def cells(self) -> list[Cell]:
        keys = list(dict.fromkeys(key for part in self.products() for key in part.keys()))
        cells: list[Cell] = []
        for repeat in range(self.repeats):
            order = keys[:]
            random.Random(self.seed * 1000 + repeat).shuffle(order)
            cells.extend(Cell(key, repeat) for key in order)
        return cells

    def keys(self) -> list[CellKey]:
        """The cell keys of this product alone (its grids not included)."""
        return [
            CellKey(
                model=m,
                protocol=p,
                connections=c,
                payload=b,
                mode=mode,
                driver=self.driver,
                backlog=bl,
                work=w,
                load=load,
                python=py,
                idle=idle,
                idle_mode=self.idle_mode if idle else "warm",
                slow=slow,
                slow_mode=self.slow_mode if slow else "sender",
            )
            for m in self.models
            for p, c, b, mode, bl, w, load, py, idle, slow in product(
                self.protocols,
                self.connections,
                self.payloads,
                self.modes,
                self.backlogs,
                self.works,
                self.loads,
                self.python_axis(m),
                self.idle,
                self.slow,
            )
        ]

    @property
    def has_idle(self) -> bool:
        """Idle connections are an axis (of the main product or a grid): every cell
        records what it held (even 0) and the server's memory at rest."""
        return any(product.idle != (0,) for product in self.products())

    @property
    def has_slow(self) -> bool:
        """Slow connections are an axis: the load generator of every cell (0 slow ones
        too, so that the cells compare) does not busy-poll, so that the slow holders,
        which share its CPUs, send while it waits rather than preempt it (docs/slow.md)."""
        return any(product.slow != (0,) for product in self.products())

    @property
    def loads(self) -> tuple[str, ...]:
        """The offered-load axis as CellKey.load values ("" is the closed loop)."""
        opened = (*(f"r{r:g}" for r in self.rates), *(f"f{f:g}" for f in self.sweep))
        return ("", *opened) if self.closed or not opened else opened

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Matrix:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        values["grids"] = tuple(_grid(g) for g in data.get("grids", ()))
        return cls(**values)


def _grid(data: dict[str, Any]) -> Grid:
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return Grid(**values)


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name: str) -> Matrix:
    """A profile by name (bench/profiles/NAME.toml) or by path to a TOML file."""
    path = Path(name) if name.endswith(".toml") else PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise MatrixError(
            f"no profile {name!r}{suggest(name, profile_names())}; choose from "
            f"{', '.join(profile_names())} or give a path to a .toml file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"profile {path}: {exc}") from None
    known = {f.name for f in fields(Matrix)} - {"profile", "grids"} | {"grid"}
    if unknown := set(data) - known:
        raise MatrixError(f"profile {path}: unknown keys {sorted(unknown)}")
    data["models"] = _model_names(data.get("models", "all"))
    grids = []
    for number, table in enumerate(data.pop("grid", []), 1):
        if unknown := set(table) - set(GRID_AXES):
            raise MatrixError(
                f"profile {path}: grid {number}: unknown keys {sorted(unknown)}; a grid "
                f"sets only axes: {', '.join(GRID_AXES)}"
            )
        if "models" in table:
            table["models"] = _model_names(table["models"])
        grids.append(grid := _grid(table))
        try:
            replace(Matrix(profile=path.stem, models=("epoll",)), **grid.axes())
        except (MatrixError, TypeError) as exc:
            raise MatrixError(f"profile {path}: grid {number}: {exc}") from None
    try:
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        matrix = Matrix(profile=path.stem, grids=tuple(grids), **values)
        matrix.products()  # each grid checked with the run's settings too
    except TypeError as exc:
        raise MatrixError(f"profile {path}: {exc}") from None
    return matrix


def _model_names(models: str | list[str]) -> list[str]:
    """A profile's models: a list, "all", or "families" (one line per model family)."""
    if models == "all":
        return list(MODELS)
    if models == "families":
        return [name for name, model in MODELS.items() if not model.family]
    return list(models)


def override(matrix: Matrix, **flags: Any) -> Matrix:
    """Flags given on the command line (not None) replace the profile's values. Axis flags
    describe the matrix wanted: with any of them the profile's grids are left out."""
    given: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in flags.items() if v is not None
    }
    if set(given) & set(GRID_AXES):
        given.setdefault("grids", ())
    return replace(matrix, **given)
