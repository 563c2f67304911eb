"""Permutohedral lattice (Adams, Baek & Davis 2010) for fast high-dimensional Gaussian filtering, in torch.

This is the lattice of Krähenbühl & Koltun's dense CRF (the ``densecrf`` code
that ``pydensecrf`` wraps), vectorised: the same feature scaling, simplex
search (rounding half to even like its SSE code, the same tie rule for the
ranks), barycentric weights, blur (weights 1, 1/2, 1/2 along each of the d+1
lattice directions in order, a missing neighbour counting as 0) and slice
with ``alpha = 1 / (1 + 2**-d)``. Its output approximates
``sum_j exp(-|f_i - f_j|^2 / 2) v_j`` (self term included) for features
``f`` already divided by the kernel's standard deviations.

Construction, once per feature set (reused for every filtering):

* the enclosing simplex of each point and its d+1 vertices. All coordinates
  of vertex ``r`` of a simplex are congruent to ``r`` modulo d+1, so a vertex
  is ``r`` and d integer coordinates (the last follows from the zero sum);
  they are packed exactly into one int64 with a mixed radix after
  subtracting their minima (padded by one on each side so that a neighbour's
  code never aliases another vertex), ``r`` as the most significant digit.
  If that could overflow, vertices are numbered exactly by successive
  rankings of a few coordinates at a time instead (slower, same lattice);
* unique vertices by sorting the codes; blur neighbours by binary search of
  each vertex's neighbour code among the sorted codes of the next remainder
  class (the only class it can be in);
* points whose simplex is a connected component of the lattice on its own
  (all its vertices used by no other point and without any neighbour
  outside the simplex, common with sharp intensity kernels on noisy images)
  are taken out: their filter output is their own value times a constant,
  computed once on their simplex;
* the remaining vertices are numbered in order of first use by the points
  (like densecrf's hash table: memory access stays local for points in scan
  order), and splat, the blur of each direction and slice become sparse CSR
  matrices: filtering is a few sparse-dense products (multi-threaded on CPU,
  cuSPARSE on CUDA).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

# Points per chunk of the per-point construction (bounds the temporaries).
POINT_CHUNK = 1 << 16
# Largest packed code of the fast path (below 2**63, with room for neighbour offsets).
MAX_CODE = 1 << 62


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix from valid components (no invariant checks, no beta warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def _index_dtype(n: int) -> torch.dtype:
    return torch.int32 if n < 2**31 - 1 else torch.int64


def _searchsorted(table: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``torch.searchsorted`` (on CPU numpy's, which is faster for sorted queries; same result)."""
    if table.device.type == "cpu":
        return torch.from_numpy(np.searchsorted(table.numpy(), query.numpy()))
    return torch.searchsorted(table, query)


def _float32(value: float) -> float:
    return float(np.float32(value))


@dataclass
class _Class:
    """The vertices of one remainder class ``r``, i.e. the ``r``-th vertex of every point's simplex.

    ``order`` sorts the points by their vertex's key (stably); ``segment``
    gives each vertex's first position in that order and ``count`` its number
    of points; ``vertex_of_point`` / ``vertex_of_sorted`` are local vertex
    ids (global id = ``offset`` + local id); ``keys`` are the vertices' sorted
    keys.
    """

    r: int
    offset: int
    order: torch.Tensor
    segment: torch.Tensor
    count: torch.Tensor
    vertex_of_sorted: torch.Tensor
    vertex_of_point: torch.Tensor
    keys: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.segment.numel())


class PermutohedralLattice:
    """Gaussian filtering of values at ``N`` points with ``d``-dimensional features.

    ``features`` is ``(N, d)``, already scaled (divided by the standard
    deviations); the lattice lives on the features' device. :meth:`filter`
    maps ``(N, C)`` values to ``(N, C)``, float32. ``timings`` holds the
    seconds spent on each construction stage.
    """

    def __init__(self, features: torch.Tensor, max_code: int = MAX_CODE) -> None:
        if features.ndim != 2 or features.shape[1] < 1:
            raise ValueError(f"features must be (points, dimensions), got shape {tuple(features.shape)}")
        if features.shape[0] < 1:
            raise ValueError("the lattice needs at least one point")
        features = features.to(torch.float32)
        if not torch.isfinite(features).all():
            raise ValueError("features must be finite")
        self.device = features.device
        self.n_points, self.d = int(features.shape[0]), int(features.shape[1])
        n, d, r1 = self.n_points, self.d, self.d + 1
        self.timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - clock
            clock = now

        # Per point: remainder-0 vertex / (d+1), ranks, barycentric weights.
        m = torch.empty((n, r1), dtype=torch.int32, device=self.device)
        rank = torch.empty((n, r1), dtype=torch.int16, device=self.device)
        weights = torch.empty((n, r1), dtype=torch.float32, device=self.device)
        for start in range(0, n, POINT_CHUNK):
            stop = min(n, start + POINT_CHUNK)
            m[start:stop], rank[start:stop], weights[start:stop] = self._locate(features[start:stop])
        lap("simplices")

        # Coordinates q_i (i < d) of vertex r: m_i - [rank_i >= d+1-r], padded by one for the neighbours.
        lo = m[:, :d].amin(dim=0).to(torch.int64) - 2
        hi = m[:, :d].amax(dim=0).to(torch.int64) + 1
        span = [int(s) for s in (hi - lo + 1).tolist()]
        self.exact_fallback = r1 * math.prod(span) > max_code
        if not self.exact_fallback:
            keys = self._packed_codes(m, rank, lo, span)
        else:
            log.debug("lattice codes would exceed %.3g: exact staged numbering", float(max_code))
            keys, stages = self._staged_keys(m, rank, lo, span, max_code)
        lap("keys")
        classes = self._map(lambda r: self._sort_class(r, keys[r]), range(r1))
        offset = 0
        for c in classes:
            c.offset = offset
            offset += c.size
        keys = None  # frees the codes before the matrices are built

        lap("unique")
        if not self.exact_fallback:
            edges = self._packed_neighbours(classes)
        else:
            edges = self._staged_neighbours(classes, stages, m, rank, lo)
        del m
        lap("neighbours")
        self._assemble(classes, edges, rank, weights)
        self._buffer: torch.Tensor | None = None
        self._buffer_channels = 0
        lap("matrices")

    # -- construction ---------------------------------------------------------------------------------------------

    def _map(self, function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``function`` over ``items``, in threads on CPU (the sorts and searches are single-threaded there)."""
        items = list(items)
        workers = min(torch.get_num_threads(), len(items))
        if workers <= 1 or self.device.type != "cpu":
            return [function(item) for item in items]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(function, items))

    def _locate(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Enclosing simplex of each point: (m = remainder-0 vertex / (d+1), rank, barycentric weights), (n, d+1)."""
        n, d = f.shape
        r1 = d + 1
        device = f.device
        inv_std_dev = _float32(math.sqrt(2.0 / 3.0) * r1)
        scale = [_float32(1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std_dev) for i in range(d)]
        down = _float32(1.0 / r1)
        ft = f.T.contiguous()
        # Elevate (y = E f), accumulated in float32 in densecrf's order; coordinate-major (d+1, n).
        elevated = torch.empty((r1, n), dtype=torch.float32, device=device)
        sm = torch.zeros(n, dtype=torch.float32, device=device)
        for j in range(d, 0, -1):
            cf = ft[j - 1] * scale[j - 1]
            torch.sub(sm, cf, alpha=j, out=elevated[j])
            sm += cf
        elevated[0] = sm
        del ft, sm
        # Closest remainder-0 point (round half to even, as SSE rounds).
        rem0 = torch.round(elevated * down)
        total = rem0.sum(dim=0)
        rem0 *= r1
        diff = elevated - rem0
        # Rank of each coordinate's residual, with densecrf's tie rule (the earlier coordinate ranks first):
        # rank_i = #{j > i: diff_j > diff_i} + #{j < i: diff_j >= diff_i}.
        rank = torch.empty((r1, n), dtype=torch.float32, device=device)
        for i in range(r1):
            count = total.clone()
            if i + 1 < r1:
                count += (diff[i + 1:] > diff[i]).sum(dim=0)
            if i > 0:
                count += (diff[:i] >= diff[i]).sum(dim=0)
            rank[i] = count
        # Bring the point back onto the plane.
        wrap = (rank < 0).to(torch.float32) - (rank >= r1).to(torch.float32)
        wrap *= r1
        rank += wrap
        rem0 += wrap
        del wrap, diff
        rank_index = rank.to(torch.int64)
        # Barycentric coordinates.
        residual = (elevated - rem0).mul_(down)
        bary = torch.zeros((r1 + 1, n), dtype=torch.float32, device=device)
        bary.scatter_add_(0, d - rank_index, residual)
        bary.scatter_add_(0, d + 1 - rank_index, residual.neg_())
        bary[0] += 1.0 + bary[r1]
        m = rem0.mul_(down).round_().to(torch.int32)
        return m.T, rank_index.T.to(torch.int16), bary[:r1].T

    def _packed_codes(self, m: torch.Tensor, rank: torch.Tensor, lo: torch.Tensor, span: list[int]) -> torch.Tensor:
        """(d+1, N) int64 code ``r * prod(span) + sum_i (q_i - lo_i) * stride_i`` of each point's vertex ``r``."""
        n, d, r1 = self.n_points, self.d, self.d + 1
        strides = [1]
        for s in span[:-1]:
            strides.append(strides[-1] * s)
        self._strides, self._class_span = strides, math.prod(span)
        stride_ext = torch.tensor(strides + [0], dtype=torch.int64, device=self.device)
        offset = int(sum(s * int(lo_i) for s, lo_i in zip(strides, lo.tolist(), strict=True)))
        vertex = torch.arange(r1, dtype=torch.int64, device=self.device) * self._class_span
        codes = torch.empty((r1, n), dtype=torch.int64, device=self.device)
        for start in range(0, n, POINT_CHUNK):
            stop = min(n, start + POINT_CHUNK)
            mc = m[start:stop, :d].to(torch.int64)
            base = (mc * stride_ext[:d]).sum(dim=1) - offset
            rk = rank[start:stop].to(torch.int64)
            # by_rank[p, k]: stride of the coordinate ranked k; vertex r lowers the coordinates ranked >= d+1-r.
            by_rank = torch.zeros_like(rk).scatter_(1, rk, stride_ext.expand_as(rk))
            suffix = torch.flip(torch.cumsum(torch.flip(by_rank, [1]), dim=1), [1])
            lowered = torch.cat([torch.zeros_like(suffix[:, :1]), torch.flip(suffix[:, 1:], [1])], dim=1)
            codes[:, start:stop] = (vertex + base[:, None] - lowered).T
        return codes

    def _sort_class(self, r: int, keys: torch.Tensor) -> _Class:
        """Unique vertices of remainder class ``r`` from its points' keys (per-point arrays int32 to save memory)."""
        n = keys.numel()
        small = torch.int32 if n < 2**31 - 1 else torch.int64
        sorted_keys, order = torch.sort(keys, stable=True)
        new_segment = torch.ones(n, dtype=torch.bool, device=self.device)
        torch.ne(sorted_keys[1:], sorted_keys[:-1], out=new_segment[1:])
        segment = torch.nonzero(new_segment).squeeze(1)
        unique_keys = sorted_keys.index_select(0, segment)
        del sorted_keys
        vertex_of_sorted = torch.cumsum(new_segment, dim=0, dtype=small).sub_(1)
        del new_segment
        count = torch.diff(segment, append=torch.tensor([n], device=self.device))
        vertex_of_point = torch.empty_like(vertex_of_sorted).scatter_(0, order, vertex_of_sorted)
        return _Class(r, 0, order.to(small), segment, count, vertex_of_sorted, vertex_of_point, unique_keys)

    def _packed_neighbours(self, classes: list[_Class]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per direction j: (a, b) global ids with b the neighbour of a one step along j (n2 in densecrf)."""
        d, r1 = self.d, self.d + 1
        class_span, strides = self._class_span, self._strides + [0]
        total_stride = sum(self._strides)
        jobs = []
        for j in range(r1):
            for r in range(r1):
                # n2: remainder r+1 with q_j - 1; from remainder d: remainder 0 with every other q_i + 1.
                delta = class_span - strides[j] if r < d else -d * class_span + total_stride - strides[j]
                source, target = classes[r], classes[(r + 1) % r1]
                if source.size and target.size:
                    jobs.append((j, source, target, delta))

        def search(job: tuple[int, _Class, _Class, int]) -> tuple[torch.Tensor, torch.Tensor]:
            _, source, target, delta = job
            query = source.keys + delta
            at = _searchsorted(target.keys, query).to(self.device).clamp_(max=target.size - 1)
            found = torch.nonzero(target.keys.index_select(0, at) == query).squeeze(1)
            return found + source.offset, at.index_select(0, found).add_(target.offset)

        return self._edges_by_direction(jobs, self._map(search, jobs))

    def _edges_by_direction(self, jobs: list[tuple[Any, ...]], results: list[tuple[torch.Tensor, torch.Tensor]]
                            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        edges = []
        empty = torch.zeros(0, dtype=torch.int64, device=self.device)
        for j in range(self.d + 1):
            mine = [result for job, result in zip(jobs, results, strict=True) if job[0] == j]
            edges.append((torch.cat([a for a, _ in mine]) if mine else empty,
                          torch.cat([b for _, b in mine]) if mine else empty))
        return edges

    # Exact fallback ----------------------------------------------------------------------------------------------

    def _vertex_columns(self, r: int, points: torch.Tensor, m: torch.Tensor, rank: torch.Tensor,
                        lo: torch.Tensor) -> torch.Tensor:
        """(len(points), d+1) int64 coordinates ``(r, q_0 - lo_0, .., q_{d-1} - lo_{d-1})`` of vertex ``r``."""
        d, r1 = self.d, self.d + 1
        rk = rank.index_select(0, points)[:, :d].to(torch.int64)
        q = m.index_select(0, points)[:, :d].to(torch.int64) - (rk >= r1 - r).to(torch.int64) - lo
        return torch.cat([torch.full_like(q[:, :1], r), q], dim=1)

    def _staged_keys(self, m: torch.Tensor, rank: torch.Tensor, lo: torch.Tensor, span: list[int],
                     max_code: int) -> tuple[torch.Tensor, tuple[list[list[int]], list[torch.Tensor], list[int]]]:
        """Exact vertex keys when packed codes could overflow: rank a few coordinates at a time.

        Each vertex's integer coordinates ``(r, q_0 .. q_{d-1})`` are reduced to
        a dense id by stages: stage ``s`` packs the previous stage's id with the
        next group of coordinates (as many as fit in an int64) and ranks the
        result among the sorted unique values. ``r`` is the most significant
        digit, so the ids of each remainder class are contiguous. Neighbours go
        through the same stages, absent as soon as one stage does not find them.
        """
        n, r1 = self.n_points, self.d + 1
        col_span = [r1] + span  # column 0 is r, columns 1..d are q_i - lo_i
        entries = n * r1
        limit = min(MAX_CODE, max(max_code, max(col_span) * (entries + 1)))
        groups: list[list[int]] = []
        for c, s in enumerate(col_span):
            previous = 1 if len(groups) <= 1 else entries + 1
            if groups and previous * math.prod(col_span[k] for k in groups[-1]) * s <= limit:
                groups[-1].append(c)
            else:
                groups.append([c])
        points = torch.arange(n, device=self.device)
        columns = torch.cat([self._vertex_columns(r, points, m, rank, lo) for r in range(r1)])  # class-major
        tables: list[torch.Tensor] = []
        ids: torch.Tensor | None = None
        for group in groups:
            key = self._stage_key(columns, group, ids, col_span)
            table = torch.unique(key, sorted=True)
            tables.append(table)
            ids = _searchsorted(table, key).to(self.device)
        assert ids is not None
        return ids.view(r1, n), (groups, tables, col_span)

    @staticmethod
    def _stage_key(columns: torch.Tensor, group: list[int], previous: torch.Tensor | None,
                   col_span: list[int]) -> torch.Tensor:
        key = previous.clone() if previous is not None else torch.zeros(columns.shape[0], dtype=torch.int64,
                                                                        device=columns.device)
        for c in group:
            key = key * col_span[c] + columns[:, c]
        return key

    def _staged_neighbours(self, classes: list[_Class], stages: tuple[list[list[int]], list[torch.Tensor], list[int]],
                           m: torch.Tensor, rank: torch.Tensor, lo: torch.Tensor
                           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        groups, tables, col_span = stages
        d, r1 = self.d, self.d + 1
        # The final stage's ids are the global vertex ids; coordinates of each vertex from its first point.
        vertices = torch.cat([self._vertex_columns(c.r, c.order.index_select(0, c.segment), m, rank, lo)
                              for c in classes])
        span_t = torch.tensor(col_span[1:], dtype=torch.int64, device=self.device)

        def lookup(cols: torch.Tensor) -> torch.Tensor:
            present = ((cols[:, 1:] >= 0) & (cols[:, 1:] < span_t)).all(dim=1)
            cols = torch.where(present[:, None], cols, torch.zeros_like(cols))
            ids: torch.Tensor | None = None
            for group, table in zip(groups, tables, strict=True):
                key = self._stage_key(cols, group, ids, col_span)
                ids = _searchsorted(table, key).to(self.device).clamp_(max=table.numel() - 1)
                present &= table.index_select(0, ids) == key
            assert ids is not None
            return torch.where(present, ids, torch.full_like(ids, -1))

        r = vertices[:, 0]
        wraps = r == d
        jobs, results = [], []
        for j in range(r1):
            # n2: r+1 and q_j - 1; from r = d: r = 0 and every other q_i + 1.
            c = vertices.clone()
            c[:, 0] = torch.where(wraps, torch.zeros_like(r), r + 1)
            c[:, 1:] += wraps.to(torch.int64)[:, None]
            if j < d:
                c[:, 1 + j] -= 1  # not wrapping: q_j - 1; wrapping: q_j unchanged
            target = lookup(c)
            found = torch.nonzero(target >= 0).squeeze(1)
            jobs.append((j,))
            results.append((found, target.index_select(0, found)))
        return self._edges_by_direction(jobs, results)

    # Matrices ----------------------------------------------------------------------------------------------------

    def _assemble(self, classes: list[_Class], edges: list[tuple[torch.Tensor, torch.Tensor]], rank: torch.Tensor,
                  weights: torch.Tensor) -> None:
        """Take out isolated simplices, number the other vertices by first use, build the CSR matrices."""
        n, d, r1 = self.n_points, self.d, self.d + 1
        device = self.device
        n_old = sum(c.size for c in classes)
        count = torch.cat([c.count for c in classes])

        # Isolated points: every vertex private (one point) with only its two edges within the simplex.
        degree = torch.bincount(torch.cat([x for edge in edges for x in edge]), minlength=n_old)
        alone = (count == 1) & (degree == 2)
        del degree
        isolated = torch.ones(n, dtype=torch.bool, device=device)
        for c in classes:
            isolated &= alone[c.offset:c.offset + c.size].index_select(0, c.vertex_of_point)
        del alone
        isolated_points = torch.nonzero(isolated).squeeze(1)
        self.n_isolated = int(isolated_points.numel())
        self._gain = torch.zeros(n, dtype=torch.float32, device=device)
        dropped = torch.zeros(n_old, dtype=torch.bool, device=device)
        if self.n_isolated:
            self._gain.index_copy_(0, isolated_points, self._isolated_gain(
                rank.index_select(0, isolated_points).to(torch.int64), weights.index_select(0, isolated_points)))
            for c in classes:
                vertices = c.vertex_of_point.index_select(0, isolated_points).to(torch.int64).add_(c.offset)
                dropped.index_fill_(0, vertices, True)
        self._has_gain = self.n_isolated > 0
        del isolated_points

        # Numbering: kept vertices by first use (point, then remainder), then the dropped ones (cut off below).
        first_use = torch.zeros((n, r1), dtype=torch.bool, device=device)
        first_point = []
        for c in classes:
            first = c.order.index_select(0, c.segment).to(torch.int64)
            first_point.append(first)
            kept = ~dropped[c.offset:c.offset + c.size]
            first_use[:, c.r].index_fill_(0, first[kept], True)
        numbering = torch.cumsum(first_use.view(-1), dim=0, dtype=torch.int64 if n * r1 >= 2**31 else torch.int32)
        del first_use
        new_id = torch.cat([numbering.index_select(0, first.mul_(r1).add_(c.r)) for c, first in
                            zip(classes, first_point, strict=True)]).to(torch.int64).sub_(1)
        del numbering, first_point
        self.n_vertices = m_kept = n_old - int(dropped.sum())
        new_id.masked_scatter_(dropped, torch.arange(m_kept, n_old, device=device))
        del dropped
        alpha = 1.0 / (1.0 + 2.0 ** (-d))
        index = _index_dtype(n * r1 + 1)

        # Slice (N x M): the kept points' rows.
        columns = torch.empty((r1, n), dtype=index, device=device)
        for c in classes:
            columns[c.r] = new_id[c.offset:c.offset + c.size].index_select(0, c.vertex_of_point)
        kept_points = torch.nonzero(~isolated).squeeze(1)
        crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
        torch.cumsum((~isolated).to(torch.int64).mul_(r1), dim=0, out=crow[1:])
        self._slice = _csr(crow.to(index), columns.T.index_select(0, kept_points).reshape(-1),
                           weights.index_select(0, kept_points).mul_(alpha).view(-1), (n, m_kept))
        del columns, crow, kept_points

        # Splat (M x N): each vertex's points, vertices in new id order, points in order.
        row_start = torch.zeros(n_old + 1, dtype=torch.int64, device=device)
        torch.cumsum(torch.empty_like(count).scatter_(0, new_id, count), dim=0, out=row_start[1:])
        splat_points = torch.empty(n * r1, dtype=index, device=device)
        splat_weights = torch.empty(n * r1, dtype=torch.float32, device=device)
        weights_by_class = weights.T.contiguous()

        def place(c: _Class) -> None:
            # Sorted position s of vertex v goes to row_start[new v] + s - segment[v].
            shift = row_start.index_select(0, new_id[c.offset:c.offset + c.size]).sub_(c.segment)
            position = shift.index_select(0, c.vertex_of_sorted).add_(torch.arange(n, device=device))
            splat_points.scatter_(0, position, c.order.to(index))  # int32 unless huge
            splat_weights.scatter_(0, position, weights_by_class[c.r].index_select(0, c.order))

        self._map(place, classes)
        kept_entries = int(row_start[m_kept])
        self._splat = _csr(row_start[:m_kept + 1].to(index), splat_points[:kept_entries],
                           splat_weights[:kept_entries], (m_kept, n))
        del classes

        # Blur along each direction: v_i + (v_n1 + v_n2) / 2 as (rows, CSR): each edge (a, b = n2(a)) adds half of
        # b's value to a's and half of a's to b's, the CSR's row k gathering the value for rows[k].
        def blur(edge: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            a, b = new_id.index_select(0, edge[0]), new_id.index_select(0, edge[1])
            keep = torch.nonzero(a < m_kept).squeeze(1)
            a, b = a.index_select(0, keep), b.index_select(0, keep)
            rows, cols = torch.cat([a, b]), torch.cat([b, a])
            order = torch.argsort(rows)  # memory locality
            rows, cols = rows.index_select(0, order), cols.index_select(0, order)
            blur_index = _index_dtype(max(m_kept, rows.numel()) + 1)
            return rows, _csr(torch.arange(rows.numel() + 1, dtype=blur_index, device=device), cols.to(blur_index),
                              torch.full((rows.numel(),), 0.5, dtype=torch.float32, device=device),
                              (rows.numel(), m_kept))

        self._blur: list[tuple[torch.Tensor, torch.Tensor]] = self._map(blur, edges)

    def _isolated_gain(self, rank: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Filter output / input of points whose simplex is a lattice component on its own."""
        d, r1 = self.d, self.d + 1
        values = weights.clone()  # splat of 1 onto the simplex's vertices (index r = remainder)
        for j in range(r1):
            # The simplex's edge along direction j joins vertex d - rank_j to the next one.
            a = (d - rank[:, j:j + 1])
            b = torch.remainder(a + 1, r1)
            va, vb = values.gather(1, a), values.gather(1, b)
            values.scatter_add_(1, a, 0.5 * vb)
            values.scatter_add_(1, b, 0.5 * va)
        alpha = 1.0 / (1.0 + 2.0 ** (-d))
        return (weights * values).sum(dim=1) * alpha

    # -- filtering ------------------------------------------------------------------------------------------------

    def filter(self, values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Splat, blur along the d+1 lattice directions, slice: ``(N, C)`` float32 -> ``(N, C)`` (into ``out``)."""
        if values.ndim != 2 or values.shape[0] != self.n_points:
            raise ValueError(f"values must be ({self.n_points}, channels), got {tuple(values.shape)}")
        values = values.to(device=self.device, dtype=torch.float32).contiguous()
        channels = values.shape[1]
        if out is None:
            out = torch.empty_like(values)
        # Work buffers, reused by later calls: large temporaries are expensive to allocate (page faults).
        self.reserve(channels)
        assert self._buffer is not None
        lattice = self._buffer[:self.n_vertices * channels].view(self.n_vertices, channels)
        torch.mm(self._splat, values, out=lattice)
        for rows, matrix in self._blur:
            if rows.numel():
                delta = self._buffer[lattice.numel():lattice.numel() + rows.numel() * channels].view(-1, channels)
                torch.mm(matrix, lattice, out=delta)
                lattice.index_add_(0, rows, delta)
        torch.mm(self._slice, lattice, out=out)
        if self._has_gain:
            out.addcmul_(values, self._gain[:, None])
        return out

    def reserve(self, channels: int) -> None:
        """Allocate the work buffers of :meth:`filter` for up to ``channels`` channels now."""
        if self._buffer_channels < channels:
            max_rows = max((rows.numel() for rows, _ in self._blur), default=0)
            self._buffer = torch.empty((self.n_vertices + max_rows) * channels, dtype=torch.float32,
                                       device=self.device)
            self._buffer_channels = channels

    def release_buffers(self) -> None:
        """Free the work buffers kept between calls of :meth:`filter`."""
        self._buffer, self._buffer_channels = None, 0

    @property
    def n_entries(self) -> int:
        """Non-zeros of the splat (vertex uses by the points not taken out)."""
        return int(self._splat.values().numel())

    def __repr__(self) -> str:
        return (f"PermutohedralLattice(points={self.n_points}, d={self.d}, vertices={self.n_vertices}, "
                f"isolated_points={self.n_isolated})")
