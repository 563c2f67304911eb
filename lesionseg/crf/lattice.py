"""Permutohedral lattice (Adams, Baek & Davis 2010) for fast high-dimensional Gaussian filtering, compiled with numba.

This is the lattice of Krähenbühl & Koltun's dense CRF (the ``densecrf`` code
that ``pydensecrf`` wraps): the same feature scaling, simplex search
(rounding half to even like its SSE code, the same tie rule for the ranks),
barycentric weights, blur (weights 1, 1/2, 1/2 along each of the d+1 lattice
directions in order, a missing neighbour counting as 0) and slice with
``alpha = 1 / (1 + 2**-d)``. Its output approximates
``sum_j exp(-|f_i - f_j|^2 / 2) v_j`` (self term included) for features
``f`` already divided by the kernel's standard deviations.

Construction, once per feature set (reused for every filtering), in compiled
code on the CPU whatever the device:

* the enclosing simplex of each point and its barycentric weights, in
  parallel over the points. Vertex ``r`` of a simplex has all its
  coordinates congruent to ``r`` modulo d+1, so a vertex is ``r`` and d
  integer coordinates (the last follows from the zero sum); its key within
  its remainder class is them packed exactly into one int64 with a mixed
  radix after subtracting their minima (padded by one on each side so that a
  neighbour never aliases another vertex), or, where that could overflow,
  the coordinates themselves;
* unique vertices by sorting each class's keys (the point's index packed
  below the code where both fit one int64: a plain sort, in threads over the
  classes); a step along a lattice direction adds a constant to the key and
  leads into the next class, so each vertex's neighbours come from one merge
  walk of two sorted classes per direction;
* points whose simplex is a connected component of the lattice on its own
  (all its vertices used by no other point and without any neighbour
  outside the simplex, common with sharp intensity kernels on noisy images)
  are taken out: their filter output is their own value times a constant,
  computed once on their simplex;
* the other vertices are numbered by first use (point, then remainder), like
  densecrf's hash table numbers them, so memory access stays local when
  points are filtered in scan order.

Filtering on the CPU runs compiled loops on torch's number of threads: splat
gathered per vertex, the blur of each direction in place along its chains of
neighbours, slice per point. On another device (CUDA) the same structure
lives there as torch tensors: splat and slice are sparse CSR products, the
blur gathers by index.

numba caches the compiled code on disk (``cache=True``), so processes after
the first (one per Snakemake job) load it instead of compiling; without a
writable cache directory it compiles in every process.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch
from numba import prange

log = logging.getLogger(__name__)

if "NUMBA_THREADING_LAYER" not in os.environ:
    # numba's OpenMP layer and torch's OpenMP pool keep their threads spinning on the job's few cores after each
    # parallel loop, slowing each other (the CRF took up to 1.7x as long with OMP_NUM_THREADS set, as Snakemake
    # sets it). numba's own work queue sleeps instead; it needs its parallel loops called from one thread at a
    # time.
    numba.config.THREADING_LAYER = "workqueue"

# Largest span of a class's packed keys (below 2**63, with room for the neighbours' shifts).
MAX_CODE = 1 << 62
# Items per task of the compiled parallel loops that need scratch space (allocated once per task).
CHUNK = 4096
# Vertex id meaning "none".
NONE = -1


def compiled(parallel: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit``, cached on disk where numba finds a writable cache directory (else compiled per process);
    releasing the GIL, so threads can run the per-class work side by side."""
    options = {"nogil": True, "parallel": parallel, "error_model": "numpy"}

    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # numba found no writable cache directory
            log.debug("no writable numba cache directory for %s: compiled in each process", function.__name__)
            return numba.njit(**options)(function)

    return decorate


def use_torch_threads() -> None:
    """Run numba's parallel loops on torch's number of threads (the job's), as far as numba has threads."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


# -- compiled construction --------------------------------------------------------------------------------------------


@compiled(parallel=True)
def _locate(features: np.ndarray, scale: np.ndarray, down: np.float32
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Enclosing simplex of each point, as densecrf finds it: (m (N, d) int32 = remainder-0 vertex / (d+1),
    ranks (N, d+1) int16, barycentric weights (N, d+1) float32), float32 arithmetic in densecrf's order."""
    n, d = features.shape
    r1 = d + 1
    m = np.empty((n, d), np.int32)
    rank = np.empty((n, r1), np.int16)
    weights = np.empty((n, r1), np.float32)
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        elevated = np.empty(r1, np.float32)
        rem0 = np.empty(r1, np.float32)
        rk = np.empty(r1, np.int64)
        bary = np.empty(r1 + 1, np.float32)
        for k in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            total = np.float32(0.0)
            for j in range(d, 0, -1):  # elevate onto the plane
                cf = features[k, j - 1] * scale[j - 1]
                elevated[j] = total - np.float32(j) * cf
                total += cf
            elevated[0] = total
            shift = 0
            for i in range(r1):  # closest remainder-0 point, rounding half to even as SSE does
                rounded = np.rint(elevated[i] * down)
                rem0[i] = rounded * np.float32(r1)
                shift += int(rounded)
            rk[:] = 0
            for i in range(d):  # ranks of the residuals; on ties the earlier coordinate ranks first
                residual = elevated[i] - rem0[i]
                for j in range(i + 1, r1):
                    if residual < elevated[j] - rem0[j]:
                        rk[i] += 1
                    else:
                        rk[j] += 1
            for i in range(r1):  # back onto the plane
                rk[i] += shift
                if rk[i] < 0:
                    rk[i] += r1
                    rem0[i] += np.float32(r1)
                elif rk[i] > d:
                    rk[i] -= r1
                    rem0[i] -= np.float32(r1)
            bary[:] = 0.0
            for i in range(r1):
                t = (elevated[i] - rem0[i]) * down
                bary[d - rk[i]] += t
                bary[d - rk[i] + 1] -= t
            bary[0] += np.float32(1.0) + bary[r1]
            for i in range(d):
                m[k, i] = int(rem0[i]) // r1
            for i in range(r1):
                rank[k, i] = rk[i]
                weights[k, i] = bary[i]
    return m, rank, weights


@compiled()
def _class_keys(m: np.ndarray, rank: np.ndarray, r: int, origin: np.ndarray, strides: np.ndarray, packed: bool,
                point_bits: int) -> np.ndarray:
    """Key of vertex ``r`` of every point, its coordinates ``q_i = m_i - [rank_i >= d+1-r]`` (i < d): the packed
    code ``sum_i (q_i - origin_i) * stride_i`` (shifted left by ``point_bits`` over the point's index where
    ``point_bits > 0``), (N, 1); or the coordinates themselves, (N, d)."""
    n, d = m.shape
    keys = np.empty((n, 1 if packed else d), np.int64)
    for point in range(n):
        code = 0
        for i in range(d):
            q = m[point, i] - (1 if rank[point, i] >= d + 1 - r else 0)
            if packed:
                code += (q - origin[i]) * strides[i]
            else:
                keys[point, i] = q
        if packed:
            keys[point, 0] = (code << point_bits) | point if point_bits else code
    return keys


@compiled()
def _unpack(packed: np.ndarray, point_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``code << point_bits | point`` values -> (codes (N, 1), points (N,))."""
    n = packed.shape[0]
    codes = np.empty((n, 1), np.int64)
    order = np.empty(n, np.int32)
    low = (1 << point_bits) - 1
    for k in range(n):
        codes[k, 0] = packed[k] >> point_bits
        order[k] = packed[k] & low
    return codes, order


@compiled()
def _segments(keys: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unique vertices of one remainder class from its points' keys sorted stably (``order``: the points):
    (unique keys (U, W), start of each in the sorted order, its number of points, vertex of each point)."""
    n, width = keys.shape
    new = np.zeros(n, np.bool_)  # first of its vertex
    new[0] = True
    for k in range(1, n):
        for i in range(width):
            if keys[k, i] != keys[k - 1, i]:
                new[k] = True
                break
    n_unique = int(new.sum())
    unique = np.empty((n_unique, width), np.int64)
    start = np.empty(n_unique, np.int64)
    count = np.zeros(n_unique, np.int32)
    vertex_of_point = np.empty(n, np.int32)
    u = -1
    for k in range(n):
        if new[k]:
            u += 1
            for i in range(width):
                unique[u, i] = keys[k, i]
            start[u] = k
        count[u] += 1
        vertex_of_point[order[k]] = u
    return unique, start, count, vertex_of_point


@compiled()
def _class_steps(keys: np.ndarray, following: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """(d+1, U) index in class r+1 (sorted unique ``following`` keys) of the vertex one step along each direction j
    from each vertex of class r (sorted unique ``keys``), the step adding ``shifts[j]`` to the key; NONE where
    absent."""
    n_keys, width = keys.shape
    n_following = following.shape[0]
    steps = np.full((shifts.shape[0], n_keys), NONE, np.int32)
    for j in range(shifts.shape[0]):
        b = 0
        for a in range(n_keys):  # the shifted keys stay sorted: one merge walk
            same = False
            while b < n_following:  # to the first following key not below key a + shift
                same = True
                below = False
                for i in range(width):
                    target = keys[a, i] + shifts[j, i]
                    if following[b, i] != target:
                        same = False
                        below = following[b, i] < target
                        break
                if not below:
                    break
                b += 1
            if same:
                steps[j, a] = b
    return steps


@compiled()
def _count_steps(steps: np.ndarray, outgoing: np.ndarray, incoming: np.ndarray) -> None:
    """Add each step to the degree of both its ends."""
    for j in range(steps.shape[0]):
        for a in range(steps.shape[1]):
            if steps[j, a] != NONE:
                outgoing[a] += 1
                incoming[steps[j, a]] += 1


@compiled(parallel=True)
def _keep_alone(alone: np.ndarray, vertex_alone: np.ndarray, vertex_of_point: np.ndarray) -> None:
    """``alone[p] &= vertex_alone[vertex of p]`` for one remainder class."""
    for point in prange(alone.shape[0]):
        alone[point] &= vertex_alone[vertex_of_point[point]]


@compiled(parallel=True)
def _gather_ids(point_vertex: np.ndarray, r: int, new_id: np.ndarray, vertex_of_point: np.ndarray) -> None:
    """Column ``r`` of ``point_vertex``: the new id of each point's class-r vertex."""
    for point in prange(point_vertex.shape[0]):
        point_vertex[point, r] = new_id[vertex_of_point[point]]


@compiled(parallel=True)
def _isolated_gain(isolated: np.ndarray, rank: np.ndarray, weights: np.ndarray, alpha: np.float32) -> np.ndarray:
    """The filter's gain on each isolated point (0 elsewhere): its simplex alone, splat of 1, blurred along the
    simplex's edges, sliced."""
    n, r1 = rank.shape
    d = r1 - 1
    gain = np.zeros(n, np.float32)
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        values = np.empty(r1, np.float32)
        for point in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            if not isolated[point]:
                continue
            values[:] = weights[point]  # index: the vertex's remainder
            for j in range(r1):  # the simplex's edge along direction j joins vertex d - rank_j to the next one
                a = d - rank[point, j]
                b = (a + 1) % r1
                va, vb = values[a], values[b]
                values[a] += np.float32(0.5) * vb
                values[b] += np.float32(0.5) * va
            total = np.float32(0.0)
            for r in range(r1):
                total += weights[point, r] * values[r]
            gain[point] = total * alpha
    return gain


@compiled(parallel=True)
def _class_splat(r: int, new_id: np.ndarray, start: np.ndarray, count: np.ndarray, order: np.ndarray,
                 weights: np.ndarray, row_start: np.ndarray, splat_point: np.ndarray, splat_weight: np.ndarray) -> None:
    """The splat rows of the kept vertices of class ``r``: their points in order (the sort was stable)."""
    for u in prange(new_id.shape[0]):
        if new_id[u] == NONE:
            continue
        row = row_start[new_id[u]]
        for k in range(count[u]):
            point = order[start[u] + k]
            splat_point[row + k] = point
            splat_weight[row + k] = weights[point, r]


@compiled(parallel=True)
def _class_forward(forward: np.ndarray, steps: np.ndarray, new_id: np.ndarray, following_new_id: np.ndarray) -> None:
    """``forward[j, v]`` = the kept vertex one step along direction j from each kept vertex v of one class."""
    r1, n_class = steps.shape
    for u in prange(n_class):
        if new_id[u] == NONE:
            continue
        for j in range(r1):
            forward[j, new_id[u]] = NONE if steps[j, u] == NONE else following_new_id[steps[j, u]]


@compiled(parallel=True)
def _backward(forward: np.ndarray) -> np.ndarray:
    """The inverse steps (densecrf's n1) of the ``forward`` ones (n2)."""
    r1, n_kept = forward.shape
    backward = np.full((r1, n_kept), NONE, np.int32)
    for v in prange(n_kept):  # a step is one-to-one along each direction: no two tasks write one entry
        for j in range(r1):
            if forward[j, v] != NONE:
                backward[j, forward[j, v]] = v
    return backward


@compiled()
def _chains(forward: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vertices with a neighbour along each direction, as chains of forward steps: (first chain of each
    direction (d+2,), first vertex of each chain (chains + 1,), the vertices chain after chain)."""
    r1, n_kept = forward.shape
    has_back = np.zeros((r1, n_kept), np.bool_)
    n_chains, n_linked = 0, 0
    for j in range(r1):
        for v in range(n_kept):
            if forward[j, v] != NONE:
                has_back[j, forward[j, v]] = True
                n_linked += 1
        for v in range(n_kept):
            if forward[j, v] != NONE and not has_back[j, v]:
                n_chains += 1
                n_linked += 1  # the head; the others counted as steps' ends
    chain_offset = np.zeros(r1 + 1, np.int64)
    chain_start = np.empty(n_chains + 1, np.int64)
    chain_vertex = np.empty(n_linked, np.int32)
    c, k = 0, 0
    for j in range(r1):
        for v in range(n_kept):
            if forward[j, v] != NONE and not has_back[j, v]:
                chain_start[c] = k
                c += 1
                u = v
                while u != NONE:
                    chain_vertex[k] = u
                    k += 1
                    u = forward[j, u]
        chain_offset[j + 1] = c
    chain_start[n_chains] = k
    return chain_offset, chain_start, chain_vertex


# -- compiled filtering -----------------------------------------------------------------------------------------------


@compiled(parallel=True)
def _filter(values: np.ndarray, out: np.ndarray, splat_start: np.ndarray, splat_point: np.ndarray,
            splat_weight: np.ndarray, chain_offset: np.ndarray, chain_start: np.ndarray, chain_vertex: np.ndarray,
            point_vertex: np.ndarray, point_weight: np.ndarray, gain: np.ndarray, alpha: np.float32,
            lattice: np.ndarray) -> None:
    """Splat ``values`` (N, C) onto the ``lattice`` (M, C), blur along each direction, slice into ``out``;
    isolated points get their value times their gain.

    The blur walks each chain of neighbours along the direction in place,
    carrying the previous vertex's old value; the vertices without a
    neighbour along it keep theirs (it adds half of nothing).
    """
    n, channels = values.shape
    for v in prange(lattice.shape[0]):
        for c in range(channels):
            lattice[v, c] = 0.0
        for e in range(splat_start[v], splat_start[v + 1]):
            point, weight = splat_point[e], splat_weight[e]
            for c in range(channels):
                lattice[v, c] += weight * values[point, c]
    for j in range(chain_offset.shape[0] - 1):
        for chain in prange(chain_offset[j], chain_offset[j + 1]):
            begin, end = chain_start[chain], chain_start[chain + 1]
            for c in range(channels):
                previous = np.float32(0.0)
                current = lattice[chain_vertex[begin], c]
                for k in range(begin, end):
                    following = lattice[chain_vertex[k + 1], c] if k + 1 < end else np.float32(0.0)
                    lattice[chain_vertex[k], c] = current + np.float32(0.5) * (previous + following)
                    previous, current = current, following
    for point in prange(n):
        if point_vertex[point, 0] == NONE:
            for c in range(channels):
                out[point, c] = gain[point] * values[point, c]
            continue
        for c in range(channels):
            total = np.float32(0.0)
            for r in range(point_vertex.shape[1]):
                total += point_weight[point, r] * lattice[point_vertex[point, r], c]
            out[point, c] = alpha * total


# -- the lattice ------------------------------------------------------------------------------------------------------


def _map(function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """``function`` over ``items`` in torch's number of threads (the compiled functions release the GIL)."""
    items = list(items)
    workers = min(torch.get_num_threads(), len(items))
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


@dataclass
class _VertexClass:
    """The vertices of remainder class ``r`` (vertex ``r`` of every point's simplex), sorted by key.

    ``keys`` (U, W) are the unique keys; ``order`` lists the points by key
    (stably), vertex u's from ``start[u]``, ``count[u]`` of them;
    ``vertex_of_point`` is each point's vertex; ``steps`` (d+1, U) the
    vertex of class r+1 one step along each direction (NONE: absent);
    ``degree`` counts the steps from and to each vertex.
    """

    keys: np.ndarray
    order: np.ndarray
    start: np.ndarray
    count: np.ndarray
    vertex_of_point: np.ndarray
    steps: np.ndarray | None = None
    degree: np.ndarray | None = None

    @classmethod
    def sort(cls, m: np.ndarray, rank: np.ndarray, r: int, origin: np.ndarray, strides: np.ndarray, packed: bool,
             point_bits: int) -> _VertexClass:
        keys = _class_keys(m, rank, r, origin, strides, packed, point_bits)
        if point_bits:  # code and point in one int64: one plain sort, ties broken by the point
            keys = keys.reshape(-1)
            keys.sort()
            keys, order = _unpack(keys, point_bits)
        else:
            order = np.lexsort(keys.T[::-1]).astype(np.int32)
            keys = keys[order]
        unique, start, count, vertex_of_point = _segments(keys, order)
        return cls(unique, order, start, count, vertex_of_point)

    @property
    def size(self) -> int:
        return len(self.keys)


class _CompiledFilter:
    """The filter on the CPU: compiled loops on numpy views of the arrays."""

    def __init__(self, lattice: PermutohedralLattice) -> None:
        self.lattice = lattice
        self.chain_offset, self.chain_start, self.chain_vertex = _chains(lattice.forward)
        self._buffer = np.empty(0, np.float32)  # the lattice's values, reused by later calls

    def __call__(self, values: torch.Tensor, out: torch.Tensor) -> None:
        lat = self.lattice
        channels = values.shape[1]
        size = lat.n_vertices * channels
        if self._buffer.size < size:
            self._buffer = np.empty(size, np.float32)
        use_torch_threads()
        _filter(values.numpy(), out.numpy(), lat.splat_start, lat.splat_point, lat.splat_weight, self.chain_offset,
                self.chain_start, self.chain_vertex, lat.point_vertex, lat.point_weight, lat.gain, lat.alpha,
                self._buffer[:size].reshape(-1, channels))


class _SparseFilter:
    """The filter on a torch device (CUDA): splat and slice as CSR products, the blur by index gathers."""

    def __init__(self, lattice: PermutohedralLattice, device: torch.device) -> None:
        n, m = lattice.n_points, lattice.n_vertices
        self.n_vertices = m

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(device)

        with warnings.catch_warnings():  # the CSR layout's beta warning
            warnings.simplefilter("ignore", UserWarning)
            self._splat = torch.sparse_csr_tensor(
                tensor(lattice.splat_start), tensor(lattice.splat_point).to(torch.int64),
                tensor(lattice.splat_weight), size=(m, n))
            kept = lattice.point_vertex[:, 0] != NONE
            rows = np.zeros(n + 1, np.int64)
            np.cumsum(kept * lattice.point_vertex.shape[1], out=rows[1:])
            self._slice = torch.sparse_csr_tensor(
                tensor(rows), tensor(lattice.point_vertex[kept].reshape(-1)).to(torch.int64),
                tensor((lattice.point_weight[kept] * lattice.alpha).reshape(-1)), size=(n, m))
        # Absent neighbours point at a row of zeros after the vertices.
        backward = _backward(lattice.forward)
        self._backward = tensor(np.where(backward == NONE, m, backward)).to(torch.int64)
        self._forward = tensor(np.where(lattice.forward == NONE, m, lattice.forward)).to(torch.int64)
        self._gain = tensor(lattice.gain)[:, None]
        self._buffer = torch.empty(0, dtype=torch.float32, device=device)

    def __call__(self, values: torch.Tensor, out: torch.Tensor) -> None:
        channels = values.shape[1]
        size = (self.n_vertices + 1) * channels
        if self._buffer.numel() < 2 * size:
            self._buffer = torch.empty(2 * size, dtype=torch.float32, device=values.device)
        lattice, spare = (self._buffer[k * size:(k + 1) * size].view(-1, channels) for k in range(2))
        lattice[-1], spare[-1] = 0.0, 0.0
        torch.mm(self._splat, values, out=lattice[:-1])
        for backward, forward in zip(self._backward, self._forward, strict=True):
            target = spare[:-1]
            torch.index_select(lattice, 0, backward, out=target)
            target.add_(lattice.index_select(0, forward)).mul_(0.5).add_(lattice[:-1])
            lattice, spare = spare, lattice
        torch.mm(self._slice, lattice[:-1], out=out)
        out.addcmul_(values, self._gain)


class PermutohedralLattice:
    """Gaussian filtering of values at ``N`` points with ``d``-dimensional features.

    ``features`` is ``(N, d)``, already scaled (divided by the standard
    deviations); the lattice is built on the CPU and filters on ``device``
    (default: the features'). :meth:`filter` maps ``(N, C)`` values to
    ``(N, C)``, float32. ``timings`` holds the seconds spent on each
    construction stage; ``exact_fallback`` tells whether the vertices' keys
    are their coordinates (packed codes could exceed ``max_code``).
    """

    def __init__(self, features: torch.Tensor, max_code: int = MAX_CODE,
                 device: torch.device | str | None = None) -> None:
        if features.ndim != 2 or features.shape[1] < 1:
            raise ValueError(f"features must be (points, dimensions), got shape {tuple(features.shape)}")
        if features.shape[0] < 1:
            raise ValueError("the lattice needs at least one point")
        points = features.detach().to("cpu", torch.float32).contiguous().numpy()
        if not np.isfinite(points).all():
            raise ValueError("features must be finite")
        self.device = features.device if device is None else torch.device(device)
        self.n_points, self.d = points.shape
        d, r1 = self.d, self.d + 1
        self.alpha = np.float32(1.0 / (1.0 + 2.0 ** (-d)))
        self.timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.timings[stage] = now - clock
            clock = now

        use_torch_threads()
        inv_std_dev = math.sqrt(2.0 / 3.0) * r1
        scale = np.array([1.0 / math.sqrt((i + 2) * (i + 1)) * float(np.float32(inv_std_dev)) for i in range(d)],
                         np.float32)  # in double, as densecrf
        m, rank, self.point_weight = _locate(points, scale, np.float32(1.0 / r1))
        lap("simplices")

        # Coordinates q_i of a vertex lie in [min m_i - 1, max m_i]; its neighbours' one further either way.
        origin = m.min(axis=0).astype(np.int64) - 2
        span = [int(s) for s in m.max(axis=0).astype(np.int64) + 1 - origin + 1]
        class_span = math.prod(span)
        self.exact_fallback = class_span > max_code
        strides = np.cumprod([1] + span[:-1]).astype(np.int64)
        point_bits = max(1, (self.n_points - 1).bit_length())
        if self.exact_fallback:
            log.debug("lattice codes would exceed %.3g: the coordinates are the keys", float(max_code))
            point_bits = 0
        elif class_span << point_bits >= 1 << 63:
            point_bits = 0  # codes and point indices do not fit one int64 together: sorted by an index sort
        classes = _map(lambda r: _VertexClass.sort(m, rank, r, origin, strides, not self.exact_fallback,
                                                   point_bits), range(r1))
        del m
        lap("vertices")

        # Steps along direction j from class r to r+1 (n2): q_j - 1; from class d to 0: every other q_i + 1.
        shifts = []
        for r in range(r1):
            step = np.zeros((r1, d), np.int64)
            for j in range(r1):
                if r < d:
                    step[j, j:j + 1] = -1
                else:
                    step[j] = 1
                    step[j, j:j + 1] = 0
            shifts.append(step if self.exact_fallback else step @ strides[:, None])
        for c in classes:
            c.degree = np.zeros(c.size, np.int16)
        incoming = [np.zeros(c.size, np.int16) for c in classes]

        def find_steps(r: int) -> None:  # writes class r's steps and degree, and incoming of class r+1
            c = classes[r]
            c.steps = _class_steps(c.keys, classes[(r + 1) % r1].keys, shifts[r])
            _count_steps(c.steps, c.degree, incoming[(r + 1) % r1])

        _map(find_steps, range(r1))
        for c, into in zip(classes, incoming, strict=True):
            c.degree += into
        del incoming
        lap("neighbours")

        isolated = np.ones(self.n_points, np.bool_)
        for c in classes:
            _keep_alone(isolated, (c.count == 1) & (c.degree == 2), c.vertex_of_point)
        self.n_isolated = int(isolated.sum())
        self.gain = _isolated_gain(isolated, rank, self.point_weight, self.alpha)
        del rank
        lap("isolated")

        # Kept vertices (not on an isolated simplex) numbered by first use (point, then remainder), as densecrf's
        # hash table numbers them: sort their first entries, packed over their position in the class-major list.
        kept = [~((c.count == 1) & isolated[c.order[c.start]]) for c in classes]
        first_entry = np.concatenate([c.order[c.start[k]].astype(np.int64) * r1 + r
                                      for r, (c, k) in enumerate(zip(classes, kept, strict=True))])
        self.n_vertices = len(first_entry)
        position_bits = max(1, (self.n_vertices - 1).bit_length())
        by_use = np.sort((first_entry << position_bits) | np.arange(self.n_vertices))
        new_of_position = np.empty(self.n_vertices, np.int32)
        new_of_position[by_use & ((1 << position_bits) - 1)] = np.arange(self.n_vertices, dtype=np.int32)
        del first_entry, by_use
        class_ids, offset = [], 0
        for c, k in zip(classes, kept, strict=True):
            ids = np.full(c.size, NONE, np.int32)
            ids[k] = new_of_position[offset:offset + int(k.sum())]
            offset += int(k.sum())
            class_ids.append(ids)
        del new_of_position, kept
        self.point_vertex = np.empty((self.n_points, r1), np.int32)
        for r, (c, ids) in enumerate(zip(classes, class_ids, strict=True)):
            _gather_ids(self.point_vertex, r, ids, c.vertex_of_point)
        lap("numbering")

        row_length = np.zeros(self.n_vertices + 1, np.int64)
        for c, ids in zip(classes, class_ids, strict=True):
            kept_ids = ids != NONE
            row_length[ids[kept_ids] + 1] = c.count[kept_ids]
        self.splat_start = np.cumsum(row_length)
        self.splat_point = np.empty(self.splat_start[-1], np.int32)
        self.splat_weight = np.empty(self.splat_start[-1], np.float32)
        for r, (c, ids) in enumerate(zip(classes, class_ids, strict=True)):
            _class_splat(r, ids, c.start, c.count, c.order, self.point_weight, self.splat_start, self.splat_point,
                         self.splat_weight)
        lap("splat")

        self.forward = np.empty((r1, self.n_vertices), np.int32)
        for r, (c, ids) in enumerate(zip(classes, class_ids, strict=True)):
            _class_forward(self.forward, c.steps, ids, class_ids[(r + 1) % r1])
        lap("blur")
        self._filter: _CompiledFilter | _SparseFilter = _CompiledFilter(self) if self.device.type == "cpu" \
            else _SparseFilter(self, self.device)
        lap("chains" if self.device.type == "cpu" else "to device")
        self.build_seconds = sum(self.timings.values())

    def filter(self, values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Splat, blur along the d+1 lattice directions, slice: ``(N, C)`` float32 -> ``(N, C)`` (into ``out``)."""
        if values.ndim != 2 or values.shape[0] != self.n_points:
            raise ValueError(f"values must be ({self.n_points}, channels), got {tuple(values.shape)}")
        values = values.to(device=self.device, dtype=torch.float32).contiguous()
        if out is None:
            out = torch.empty_like(values)
        self._filter(values, out)
        return out

    @property
    def n_entries(self) -> int:
        """Non-zeros of the splat (vertex uses by the points not taken out)."""
        return int(self.splat_point.size)

    def __repr__(self) -> str:
        return (f"PermutohedralLattice(points={self.n_points}, d={self.d}, vertices={self.n_vertices}, "
                f"isolated_points={self.n_isolated})")
