"""The forecast's simulation kernel: lanes, layout and chunked, threaded draws.

How it is computed, and why it is fast. The figures below were measured on the
project's 2-core VMs (see MEASURED.md):

- The factor is stratified (``moments.STRATA`` equiprobable strata): every
  stratum gets ``simulations // STRATA`` simulations, the remainder going to
  strata picked at random from the seed. Simulations are processed grouped by
  stratum, so all simulations of a block share one row of the conditional win
  table (``moments.conditional_win_table``). Per deal and simulation nothing is
  left to sample but one uniform.
- Timing is independent of the win, so with q = P(close in period) the deal
  books iff ``U < thr`` with ``thr = p_stratum * q`` and U one float32 uniform.
- Given ``U < thr``, ``V = U / thr`` is again uniform and independent of the
  win, so the amount is read from the same U: ``m = a + b (1 - V)``. A block's
  totals are then two matrix-vector products,
  ``ceil(thr - U) @ (a v) + ((thr - U) * ceil(thr - U)) @ (b v / thr)``: per
  value a subtraction, a ceil (the cheapest float mask found; ``thr - U`` lies
  in (-1, 1], so ceil gives exactly 0 or 1) and a multiplication, on reused
  buffers. Drawing the uniforms stays the largest cost.
- Simulations are cut into chunks of about ``_CHUNK_VALUES`` values whose
  buffers are allocated once per worker thread and reused: memory touched for
  the first time is slow on these VMs, and NumPy's generators and ufuncs release
  the GIL, so ``workers.WORKER_THREADS`` threads give up to 2x on two cores.
  Chunk j always draws from ``SeedSequence(seed).spawn(...)[j]``, so the answer
  depends on the seed only, never on the thread count or on timing.

A lane is a pipeline, or the part of one a scenario takes out or puts in, laid
over columns of the uniforms: its thresholds and per-value weights in float32,
in units of ``moments.value_scale``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from server.engines.forecast.validation import Options
from server.engines.forecast.workers import in_threads

# About 1 MB of float32 per buffer: big enough that per-chunk Python overhead is
# noise, small enough to stay in cache and never touch fresh memory.
_CHUNK_VALUES = 262_144
# float32 uniforms are multiples of 2**-24, so any threshold in (0, 2**-24]
# already wins with probability 2**-24; raising such thresholds to 2**-24 changes
# no outcome and bounds b * value / threshold.
_MIN_THRESHOLD = 2.0**-24

@dataclass(frozen=True)
class Lane:
    """A pipeline, or part of one, laid over columns of the uniforms."""

    columns: np.ndarray | None  # union columns; None: the first `width` columns
    width: int
    thresholds: np.ndarray  # (strata, width) float32
    fixed: np.ndarray  # (width,) float32: a * value / scale
    slope: np.ndarray | None  # (strata, width) float32: b * value / (scale * threshold); None when b = 0


def booking_thresholds(table: np.ndarray, in_period: np.ndarray) -> np.ndarray:
    """P(win and close in period) per stratum and deal, as the float32 the
    simulation compares its uniforms with."""
    threshold = table * in_period[None, :]
    np.minimum(threshold, 1.0, out=threshold)
    tiny = (threshold > 0.0) & (threshold < _MIN_THRESHOLD)
    threshold[tiny] = _MIN_THRESHOLD
    return threshold.astype(np.float32)


def build_lane(
    thresholds: np.ndarray, values: np.ndarray, options: Options, scale: float, columns: np.ndarray | None
) -> Lane:
    """The lane of deals with ``values`` and booking ``thresholds`` (strata, deals),
    in units of ``scale``, over ``columns`` (None: the first columns)."""
    fixed = (options.amount_low * values / scale).astype(np.float32)
    slope = None
    if options.amount_span > 0.0:
        spans = (options.amount_span * values / scale).astype(np.float32)
        slope = np.zeros(thresholds.shape, dtype=np.float32)
        np.divide(spans, thresholds, out=slope, where=thresholds > 0)
    return Lane(columns, len(values), np.ascontiguousarray(thresholds), fixed, slope)


def sub_lane(lane: Lane, positions: np.ndarray, columns: np.ndarray) -> Lane:
    """The deals at ``positions`` of ``lane``, laid over ``columns``."""
    return Lane(
        columns=columns,
        width=len(positions),
        thresholds=np.ascontiguousarray(lane.thresholds[:, positions]),
        fixed=lane.fixed[positions],
        slope=None if lane.slope is None else np.ascontiguousarray(lane.slope[:, positions]),
    )


class Layout:
    """How simulations map to factor strata, chunks and random streams.

    Simulations are numbered stratum by stratum; chunk j holds simulations
    [j * sims_per_chunk, (j + 1) * sims_per_chunk) and draws its uniforms,
    (rows, columns) float32, from ``SeedSequence(seed).spawn(...)[j]``.
    """

    def __init__(self, options: Options, strata: int, columns: int) -> None:
        simulations = options.simulations
        counts = np.full(strata, simulations // strata, dtype=np.int64)
        remainder = simulations % strata
        if remainder:
            # The root sequence is not one of its spawned children, so this
            # stream is independent of every chunk's.
            extra = np.random.default_rng(np.random.SeedSequence(options.seed)).choice(strata, remainder, replace=False)
            counts[extra] += 1
        self.seed = options.seed
        self.simulations = simulations
        self.columns = columns
        self.bounds = np.concatenate([[0], np.cumsum(counts)])
        self.sims_per_chunk = max(1, _CHUNK_VALUES // max(columns, 1))
        self.chunks = -(-simulations // self.sims_per_chunk)

    def rows(self, chunk: int) -> tuple[int, int]:
        first = chunk * self.sims_per_chunk
        return first, min(self.simulations, first + self.sims_per_chunk)

    def blocks(self, chunk: int) -> list[tuple[int, int, int]]:
        """(stratum, first row, end row) of each stratum's rows in the chunk."""
        first, end = self.rows(chunk)
        stratum = int(np.searchsorted(self.bounds, first, side="right")) - 1
        blocks = []
        while stratum < len(self.bounds) - 1 and self.bounds[stratum] < end:
            lo, hi = max(int(self.bounds[stratum]), first), min(int(self.bounds[stratum + 1]), end)
            if hi > lo:
                blocks.append((stratum, lo - first, hi - first))
            stratum += 1
        return blocks

    def stratum(self, simulation: int) -> int:
        return int(np.searchsorted(self.bounds, simulation, side="right")) - 1

    def generator(self, chunk: int) -> np.random.Generator:
        # Same as SeedSequence(seed).spawn(chunk + 1)[chunk], without building
        # the children before it.
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(chunk,))))


class _Buffers:
    """One worker's scratch, allocated once and reused for every chunk."""

    def __init__(self, layout: Layout, width: int, gathered: int) -> None:
        rows = layout.sims_per_chunk
        self.uniforms = np.empty(rows * layout.columns, dtype=np.float32)
        self.margin = np.empty(rows * width, dtype=np.float32)  # thr - U, then its positive part
        self.mask = np.empty(rows * width, dtype=np.float32)
        self.gathered = np.empty(rows * gathered, dtype=np.float32)
        self.sums = np.empty((3, rows), dtype=np.float32)


def _lane_totals(
    uniforms: np.ndarray,
    lane: Lane,
    blocks: list[tuple[int, int, int]],
    buffers: _Buffers,
    out: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Scaled revenue of ``lane`` in each row of ``uniforms`` (rows, lane.width)."""
    rows, width = uniforms.shape
    if width == 0:
        out.fill(0.0)
        return
    margin = buffers.margin[: rows * width].reshape(rows, width)
    mask = buffers.mask[: rows * width].reshape(rows, width)
    for stratum, lo, hi in blocks:
        np.subtract(lane.thresholds[stratum], uniforms[lo:hi], out=margin[lo:hi])
    np.ceil(margin, out=mask)  # margin in (-1, 1]: 1 where won, else 0 (or -0)
    np.matmul(mask, lane.fixed, out=out)
    if lane.slope is not None:
        np.multiply(margin, mask, out=margin)
        for stratum, lo, hi in blocks:
            np.matmul(margin[lo:hi], lane.slope[stratum], out=scratch[lo:hi])
        out += scratch


def simulate(
    layout: Layout,
    base: Lane,
    differences: list[tuple[Lane, Lane]],
    cancelled: Callable[[], bool] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs every chunk; returns the base's scaled totals (simulations,) and,
    per (taken out, put in) pair of lanes, the scaled per-simulation difference
    (pairs, simulations), both float32."""
    totals = np.empty(layout.simulations, dtype=np.float32)
    diffs = np.empty((len(differences), layout.simulations), dtype=np.float32)
    if layout.columns == 0:
        totals.fill(0.0)
        diffs.fill(0.0)
        return totals, diffs
    width = max([base.width] + [lane.width for pair in differences for lane in pair])
    gathered = max([0] + [lane.width for pair in differences for lane in pair])

    def run(chunk: int, buffers: _Buffers) -> None:
        _run_chunk(chunk, layout, base, differences, buffers, totals, diffs)

    in_threads(layout.chunks, run, lambda: _Buffers(layout, width, gathered), cancelled)
    return totals, diffs


def _run_chunk(
    chunk: int,
    layout: Layout,
    base: Lane,
    differences: list[tuple[Lane, Lane]],
    buffers: _Buffers,
    totals: np.ndarray,
    diffs: np.ndarray,
) -> None:
    first, end = layout.rows(chunk)
    rows = end - first
    uniforms = buffers.uniforms[: rows * layout.columns].reshape(rows, layout.columns)
    layout.generator(chunk).random(out=uniforms, dtype=np.float32)
    blocks = layout.blocks(chunk)
    out, other, scratch = buffers.sums[0, :rows], buffers.sums[1, :rows], buffers.sums[2, :rows]
    view = uniforms if base.width == layout.columns else uniforms[:, : base.width]
    _lane_totals(view, base, blocks, buffers, out, scratch)
    totals[first:end] = out
    for pair, (taken_out, put_in) in enumerate(differences):
        for lane, target in ((taken_out, out), (put_in, other)):
            gathered = buffers.gathered[: rows * lane.width].reshape(rows, lane.width)
            np.take(uniforms, lane.columns, axis=1, out=gathered, mode="clip")
            _lane_totals(gathered, lane, blocks, buffers, target, scratch)
        np.subtract(other, out, out=diffs[pair, first:end])


class RowCache:
    """Regenerates single simulations' uniforms from their chunk's stream, for
    the example simulations behind the worst, likely and best scenarios."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._rows: dict[int, tuple[np.ndarray, int]] = {}

    def get(self, simulation: int) -> tuple[np.ndarray, int]:
        if simulation not in self._rows:
            layout = self._layout
            chunk, row = divmod(simulation, layout.sims_per_chunk)
            # Uniforms fill row by row, so the first row + 1 rows are a prefix
            # of the chunk's draw.
            uniforms = layout.generator(chunk).random((row + 1, layout.columns), dtype=np.float32)
            self._rows[simulation] = (uniforms[row].copy(), layout.stratum(simulation))
        return self._rows[simulation]
