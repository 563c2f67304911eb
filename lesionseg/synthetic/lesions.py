"""Lesions with known truth: a glioma-like tumour or an ischaemic stroke.

A lesion is drawn as continuous "signed distance" fields (mm, negative inside)
inside a box around it, turned into partial-volume fractions that replace the
healthy tissue fractions, and into a label map by thresholding at the voxel
centres. Tumour labels follow BraTS 2013 (1 necrosis, 2 edema, 3 non-enhancing,
4 enhancing); stroke labels are 0/1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial.transform import Rotation

from lesionseg.synthetic.anatomy import Anatomy
from lesionseg.synthetic.fields import inside_fraction, smooth_random_field

TUMOUR_LABELS = {"necrosis": 1, "edema": 2, "nonenhancing": 3, "enhancing": 4}
STROKE_LABELS = {"infarct": 1}
# Draws that miss a label (e.g. a compartment thinner than a voxel) or outgrow
# their box are redrawn.
MAX_ATTEMPTS = 20
# Edema spreads along white matter: speed of growth per tissue, relative to WM.
# CSF nearly stops it, so it does not cross ventricles or sulci.
EDEMA_SPEED = {"wm": 1.0, "gm": 0.12, "csf": 0.02}
# Edema mostly stays in the tumour's hemisphere: crossing the corpus callosum is slow.
CONTRALATERAL_SLOWDOWN = 6.0
# The geodesic edema distance is computed on a grid no finer than this (mm); it is
# smooth, so interpolating it back to finer voxels loses nothing visible.
EDEMA_GRID_MM = 2.0

Box = tuple[slice, slice, slice]


def _box_around(centre_vox: np.ndarray, radius_vox: float, shape: tuple[int, ...]) -> Box:
    """Slices of the cube of half-side ``radius_vox`` around ``centre_vox``, clipped to ``shape``."""
    low = np.maximum(np.floor(centre_vox - radius_vox).astype(int), 0)
    high = np.minimum(np.ceil(centre_vox + radius_vox).astype(int) + 1, shape)
    return tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high, strict=True))


def _offsets_mm(box: Box, origin_vox: np.ndarray, spacing_mm: float) -> list[np.ndarray]:
    """Per-axis offsets (mm) of the box's voxels from ``origin_vox``, broadcastable to the box."""
    offsets = []
    for axis, (sl, origin) in enumerate(zip(box, origin_vox, strict=True)):
        shape = [1, 1, 1]
        shape[axis] = sl.stop - sl.start
        offsets.append(((np.arange(sl.start, sl.stop) - origin) * spacing_mm).astype(np.float32).reshape(shape))
    return offsets


def _pick_voxel(rng: np.random.Generator, candidates: np.ndarray) -> np.ndarray | None:
    """A uniformly random voxel index (3,) among the True voxels, or None if there are none."""
    flat = np.flatnonzero(candidates)
    if flat.size == 0:
        return None
    return np.array(np.unravel_index(flat[rng.integers(flat.size)], candidates.shape), dtype=float)


def _random_ellipsoid_metric(rng: np.random.Generator, elongation: float) -> np.ndarray:
    """A 3x3 matrix mapping offsets to a randomly oriented ellipsoid of unit volume ratio.

    ``elongation`` is the standard deviation of the log axis lengths.
    """
    axes = np.exp(rng.normal(0.0, elongation, size=3))
    axes /= np.prod(axes) ** (1.0 / 3.0)  # keep the volume of the unit sphere
    rotation = Rotation.from_quat(rng.normal(size=4)).as_matrix()
    return np.diag(1.0 / axes) @ rotation.T


def _ellipsoid_radius(offsets: list[np.ndarray], metric: np.ndarray) -> np.ndarray:
    """|metric @ offset| for every box voxel, float32 (mm)."""
    squared = sum((metric[row, 0] * offsets[0] + metric[row, 1] * offsets[1] + metric[row, 2] * offsets[2]) ** 2
                  for row in range(3))
    return np.sqrt(squared).astype(np.float32)


def _cerebrum(mni_mm: np.ndarray) -> np.ndarray:
    """True where the MNI position lies in the cerebral hemispheres, off the midline (bool (x, y, z)).

    Rough box rules: above the skull base, outside the cerebellum (posterior and
    inferior), and at least 8 mm from the midline.
    """
    x, y, z = mni_mm
    cerebellum = (y < -40.0) & (z < 0.0)
    return (z > -25.0) & (z < 65.0) & ~cerebellum & (np.abs(x) > 8.0)


def _mass_effect(
    fractions: dict[str, np.ndarray], box: Box, centre_vox: np.ndarray, spacing_mm: float,
    pushed_mm: float, reach_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GM and WM fractions in ``box`` after a ball of radius ``pushed_mm`` pushed them outwards.

    Tissue at radius r came from ``cbrt(r^3 - pushed^3)``, which conserves the
    volume displaced by the ball; the push fades to nothing at ``reach_mm`` so the
    skull does not move. The radial map stays monotonic, so no tissue folds.
    """
    offsets = _offsets_mm(box, centre_vox, spacing_mm)
    radius = np.sqrt(offsets[0] ** 2 + offsets[1] ** 2 + offsets[2] ** 2)
    push = radius - np.cbrt(np.maximum(radius**3 - pushed_mm**3, 0.0))
    fade = np.clip((reach_mm - radius) / (reach_mm - pushed_mm), 0.0, 1.0)
    fade = fade * fade * (3.0 - 2.0 * fade)  # smoothstep: no kink where the push ends
    source_radius_ratio = np.divide(radius - fade * push, radius, out=np.zeros_like(radius), where=radius > 0)
    coordinates = [centre_vox[axis] + offsets[axis] * source_radius_ratio / spacing_mm for axis in range(3)]
    coordinates = np.stack(np.broadcast_arrays(*coordinates))

    def warp(volume: np.ndarray) -> np.ndarray:
        return ndi.map_coordinates(volume, coordinates, order=1, mode="nearest", output=np.float32)

    return warp(fractions["gm"]), warp(fractions["wm"])


def _resample_grid(volume: np.ndarray, step: float, shape: tuple[int, ...]) -> np.ndarray:
    """Sample ``volume`` at voxel positions ``step * i`` (order 1), float32 of ``shape``."""
    return ndi.affine_transform(volume, np.diag(np.full(3, step)), output_shape=shape, order=1, mode="nearest",
                                output=np.float32)


def _geodesic_distance_mm(
    cost: np.ndarray, active: np.ndarray, sources: np.ndarray, spacing_mm: float, limit_mm: float
) -> np.ndarray:
    """Shortest-path distance (mm, weighted by ``cost`` per mm) from the ``sources`` through ``active`` voxels.

    Dijkstra on the 26-connected graph of the active voxels; an edge costs its
    length times the mean cost of its two voxels. Inactive voxels and voxels
    farther than ``limit_mm`` get +inf. Only active voxels become graph nodes,
    which keeps the graph (and memory) small. float64 of ``cost.shape``.
    """
    shape = cost.shape
    node = np.full(shape, -1, dtype=np.int32)
    node[active] = np.arange(np.count_nonzero(active), dtype=np.int32)
    starts, ends, weights = [], [], []
    for step in itertools.product((-1, 0, 1), repeat=3):
        if step <= (0, 0, 0):  # each undirected edge once
            continue
        here = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(step, shape, strict=True))
        there = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(step, shape, strict=True))
        linked = active[here] & active[there]
        length_mm = spacing_mm * float(np.linalg.norm(step))
        starts.append(node[here][linked])
        ends.append(node[there][linked])
        weights.append(0.5 * length_mm * (cost[here][linked] + cost[there][linked]))
    n_nodes = int(node.max()) + 1
    graph = coo_matrix(
        (np.concatenate(weights), (np.concatenate(starts), np.concatenate(ends))), shape=(n_nodes, n_nodes)
    ).tocsr()
    node_distance = dijkstra(graph, directed=False, indices=node[sources & active], min_only=True, limit=limit_mm)
    distance = np.full(shape, np.inf)
    distance[active] = node_distance
    return distance


def _edema_distance_mm(
    gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, contralateral: np.ndarray, core: np.ndarray,
    spacing_mm: float, limit_mm: float,
) -> np.ndarray:
    """White-matter-weighted geodesic distance (mm) from the tumour core, float32 like ``gm``.

    One mm of white matter costs 1, grey matter and CSF cost more (see
    :data:`EDEMA_SPEED`), and more again in the ``contralateral`` hemisphere;
    paths stay inside the brain. Computed on a grid of at least :data:`EDEMA_GRID_MM`.
    """
    speed = EDEMA_SPEED["wm"] * wm + EDEMA_SPEED["gm"] * gm + EDEMA_SPEED["csf"] * csf
    cost = np.where(contralateral, CONTRALATERAL_SLOWDOWN, 1.0) / np.maximum(speed, EDEMA_SPEED["csf"])
    step = max(EDEMA_GRID_MM / spacing_mm, 1.0)
    coarse_shape = tuple(int(np.floor((n - 1) / step)) + 1 for n in gm.shape)
    coarse_cost = _resample_grid(ndi.gaussian_filter(cost, 0.4 * (step - 1.0)), step, coarse_shape)
    coarse_core = _resample_grid(core, step, coarse_shape)
    coarse_brain = _resample_grid(gm + wm + csf, step, coarse_shape) >= 0.5
    sources = coarse_brain & (coarse_core >= 0.5)
    if not sources.any():  # a core smaller than a coarse voxel: start from its densest point
        sources = coarse_brain & (coarse_core == coarse_core[coarse_brain].max())
    distance = _geodesic_distance_mm(coarse_cost, coarse_brain, sources, spacing_mm * step, limit_mm)
    distance = np.minimum(distance, 2.0 * limit_mm).astype(np.float32)  # finite for interpolation
    return _resample_grid(distance, 1.0 / step, gm.shape)


def _nested_compartments(
    rng: np.random.Generator, offsets: list[np.ndarray], radius_mm: float, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative inside-fractions of the tumour core, of its enhancing shell and of its necrosis.

    The core is an ellipsoid of equivalent radius ``radius_mm`` distorted by smooth
    noise; necrosis is an irregular inner part, and the enhancing rim around it
    varies in thickness, so the non-enhancing tumour (core minus the rest) shows
    in patches. Each array is float32 over the box, necrosis <= enhancing <= core.
    """
    shape = np.broadcast_shapes(*(o.shape for o in offsets))
    radius = _ellipsoid_radius(offsets, _random_ellipsoid_metric(rng, 0.12)) / radius_mm
    shape_noise = smooth_random_field(rng, shape, spacing_mm, max(0.5 * radius_mm, 2.0 * spacing_mm))
    inner_noise = smooth_random_field(rng, shape, spacing_mm, max(0.3 * radius_mm, 1.5 * spacing_mm))
    rim_noise = smooth_random_field(rng, shape, spacing_mm, max(0.4 * radius_mm, 1.5 * spacing_mm))
    outer = radius * np.clip(1.0 + 0.18 * shape_noise, 0.3, None)
    # Additive noise: the inner boundaries are as irregular as the outer one.
    inner = outer + 0.1 * inner_noise

    # Compartments at least a voxel thick, so each can survive the sampling.
    necrosis_radius = max(rng.uniform(0.4, 0.62), spacing_mm / radius_mm)
    rim_thickness = max(rng.uniform(0.22, 0.38), spacing_mm / radius_mm)
    enhancing_radius = necrosis_radius + rim_thickness * np.clip(1.0 + 0.6 * rim_noise, 0.3, None)

    core = inside_fraction((outer - 1.0) * radius_mm, spacing_mm)
    enhancing = np.minimum(inside_fraction((inner - enhancing_radius) * radius_mm, spacing_mm), core)
    necrosis = np.minimum(inside_fraction((inner - necrosis_radius) * radius_mm, spacing_mm), enhancing)
    return core, enhancing, necrosis


def _try_tumour(
    rng: np.random.Generator, anatomy: Anatomy, spacing_mm: float
) -> tuple[Box, dict[str, np.ndarray], np.ndarray] | None:
    """One tumour draw: box, box fractions (healthy and lesion), box label; None if it failed.

    Fails when no position fits the drawn size or a label ended up empty.
    """
    fractions = anatomy.fractions
    radius_mm = float(np.exp(rng.uniform(np.log(max(8.0, 4.0 * spacing_mm)), np.log(max(30.0, 5.0 * spacing_mm)))))
    edema_mm = rng.uniform(3.0, 14.0) + 0.25 * radius_mm
    depth_mm = -anatomy.outline_distance_mm
    x_mni = anatomy.mni_mm[0]
    candidates = (
        (fractions["wm"] > 0.7) & (depth_mm >= min(0.8 * radius_mm, 30.0)) & _cerebrum(anatomy.mni_mm)
        & (np.abs(x_mni) >= 10.0 + 0.5 * radius_mm)  # mostly within one hemisphere
    )
    centre = _pick_voxel(rng, candidates)
    if centre is None:
        return None
    side = np.sign(x_mni[tuple(centre.astype(int))])
    reach_mm = max(2.5 * radius_mm, 1.8 * radius_mm + 1.6 * edema_mm)
    box = _box_around(centre, reach_mm / spacing_mm + 2, candidates.shape)
    offsets = _offsets_mm(box, centre, spacing_mm)

    inside = fractions["gm"][box] + fractions["wm"][box] + fractions["csf"][box]
    gm, wm = _mass_effect(fractions, box, centre, spacing_mm, rng.uniform(0.3, 0.6) * radius_mm, reach_mm)
    parenchyma_scale = np.minimum(1.0, np.divide(inside, gm + wm, out=np.ones_like(inside), where=gm + wm > 0))
    gm, wm = gm * parenchyma_scale, wm * parenchyma_scale
    csf = inside - gm - wm

    core, enhancing, necrosis = _nested_compartments(rng, offsets, radius_mm, spacing_mm)
    box_shape = core.shape
    edema_noise = smooth_random_field(rng, box_shape, spacing_mm, max(8.0, 2.0 * spacing_mm))
    contralateral = side * x_mni[box] < 0.0
    distance = _edema_distance_mm(gm, wm, csf, contralateral, core, spacing_mm, 1.5 * edema_mm)
    edema = inside_fraction(distance - edema_mm * np.clip(1.0 + 0.25 * edema_noise, 0.3, None), spacing_mm)

    # Label at voxel centres: the core where it fills half the voxel, edema where
    # it affects a voxel that is mostly parenchyma.
    in_brain = inside > 0.5
    parenchyma_dominant = (gm + wm) > csf
    label = np.zeros(box_shape, dtype=np.uint8)
    in_core = in_brain & (core >= 0.5)
    label[in_core] = np.where(
        necrosis[in_core] >= 0.5,
        TUMOUR_LABELS["necrosis"],
        np.where(enhancing[in_core] >= 0.5, TUMOUR_LABELS["enhancing"], TUMOUR_LABELS["nonenhancing"]),
    )
    label[in_brain & ~in_core & (edema >= 0.5) & parenchyma_dominant] = TUMOUR_LABELS["edema"]
    if not set(TUMOUR_LABELS.values()) <= set(np.unique(label).tolist()):
        return None

    # The core displaces all brain tissue; edema is water within GM and WM.
    healthy_left = 1.0 - core
    gm, wm, csf = gm * healthy_left, wm * healthy_left, csf * healthy_left
    edema_fraction = edema * (gm + wm)
    healthy_left = 1.0 - edema
    box_fractions = {
        "gm": gm * healthy_left,
        "wm": wm * healthy_left,
        "csf": csf,
        "necrosis": necrosis * inside,
        "enhancing": (enhancing - necrosis) * inside,
        "nonenhancing": (core - enhancing) * inside,
        "edema": edema_fraction,
    }
    return box, box_fractions, label


def _wedge_infarct(rng: np.random.Generator, anatomy: Anatomy, spacing_mm: float) -> tuple[Box, np.ndarray] | None:
    """A territorial infarct: a cone from deep white matter out to a patch of cortex.

    Returns the box and the inside-fraction of the lesion shape (float32), or None
    if no cortical/deep point pair fits.
    """
    fractions, mni_mm = anatomy.fractions, anatomy.mni_mm
    depth_mm = -anatomy.outline_distance_mm
    x_mni = mni_mm[0]
    cortex = (fractions["gm"] > 0.5) & (depth_mm < 6.0) & (np.abs(x_mni) > 30.0) & _cerebrum(mni_mm)
    surface_point = _pick_voxel(rng, cortex)
    if surface_point is None:
        return None
    side = np.sign(x_mni[tuple(surface_point.astype(int))])
    length_mm = rng.uniform(25.0, 55.0)
    deep = np.argwhere((fractions["wm"] > 0.5) & (depth_mm > 15.0) & (side * x_mni > 12.0))
    distance_mm = np.linalg.norm(deep - surface_point, axis=1) * spacing_mm
    deep = deep[np.abs(distance_mm - length_mm) < 0.15 * length_mm]
    if len(deep) == 0:
        return None
    apex = deep[rng.integers(len(deep))].astype(float)

    half_angle = np.deg2rad(rng.uniform(12.0, 38.0))
    widest_opening = 1.5 * float(np.tan(half_angle))  # the noise below widens the cone up to this
    reach_mm = (length_mm + 10.0) * np.sqrt(1.0 + widest_opening**2)
    box = _box_around(apex, reach_mm / spacing_mm + 2, cortex.shape)
    offsets = _offsets_mm(box, apex, spacing_mm)
    axis = (surface_point - apex) / np.linalg.norm(surface_point - apex)
    along = axis[0] * offsets[0] + axis[1] * offsets[1] + axis[2] * offsets[2]
    across = np.sqrt(np.maximum(offsets[0] ** 2 + offsets[1] ** 2 + offsets[2] ** 2 - along**2, 0.0))
    noise = smooth_random_field(rng, along.shape, spacing_mm, max(6.0, 2.0 * spacing_mm))
    opening = float(np.tan(half_angle)) * np.clip(1.0 + 0.3 * noise, 0.5, 1.5)
    # Signed distance (mm, negative inside) to the cone, cut at the cortex and at the midline.
    signed_mm = np.maximum((across - along * opening) * float(np.cos(half_angle)), -along)
    signed_mm = np.maximum(signed_mm, along - (length_mm + 10.0))
    signed_mm = np.maximum(signed_mm, 2.0 - side * x_mni[box])
    return box, inside_fraction(signed_mm, spacing_mm)


def _deep_infarct(rng: np.random.Generator, anatomy: Anatomy, spacing_mm: float) -> tuple[Box, np.ndarray] | None:
    """A small deep (lacunar-like) infarct in the basal ganglia / corona radiata region.

    Returns the box and the inside-fraction of the lesion shape (float32), or None.
    """
    fractions, (x, y, z) = anatomy.fractions, anatomy.mni_mm
    depth_mm = -anatomy.outline_distance_mm
    deep = (
        ((fractions["wm"] + fractions["gm"]) > 0.8) & (depth_mm > 25.0)
        & (np.abs(x) > 10.0) & (np.abs(x) < 35.0) & (y > -40.0) & (y < 30.0) & (z > -5.0) & (z < 35.0)
    )
    centre = _pick_voxel(rng, deep)
    if centre is None:
        return None
    radius_mm = rng.uniform(max(3.0, 1.5 * spacing_mm), max(10.0, 2.0 * spacing_mm))
    box = _box_around(centre, 2.2 * radius_mm / spacing_mm + 2, deep.shape)
    offsets = _offsets_mm(box, centre, spacing_mm)
    radius = _ellipsoid_radius(offsets, _random_ellipsoid_metric(rng, 0.2)) / radius_mm
    noise = smooth_random_field(rng, radius.shape, spacing_mm, max(0.5 * radius_mm, spacing_mm))
    return box, inside_fraction((radius * np.clip(1.0 + 0.15 * noise, 0.3, None) - 1.0) * radius_mm, spacing_mm)


def _try_stroke(
    rng: np.random.Generator, anatomy: Anatomy, spacing_mm: float
) -> tuple[Box, dict[str, np.ndarray], np.ndarray] | None:
    """One stroke draw (territorial wedge 65%, deep infarct 35%); None if it failed."""
    draw: Callable = _wedge_infarct if rng.random() < 0.65 else _deep_infarct
    drawn = draw(rng, anatomy, spacing_mm)
    if drawn is None:
        return None
    box, lesion = drawn
    gm, wm, csf = (anatomy.fractions[name][box] for name in ("gm", "wm", "csf"))
    label = ((lesion >= 0.5) & (gm + wm + csf > 0.5) & (gm + wm > csf)).astype(np.uint8)
    if label.sum() < 3:
        return None
    # An infarct is injured parenchyma: it takes the place of GM and WM, not CSF.
    healthy_left = 1.0 - lesion
    box_fractions = {"gm": gm * healthy_left, "wm": wm * healthy_left, "infarct": lesion * (gm + wm)}
    return box, box_fractions, label


def _cut_by_box(box: Box, box_label: np.ndarray, shape: tuple[int, ...]) -> bool:
    """True if the lesion reaches a face of its box inside the array: the box was too small."""
    for axis, extent in enumerate(box):
        faces = [face for face, inner in ((0, extent.start > 0), (-1, extent.stop < shape[axis])) if inner]
        if faces and box_label.take(faces, axis=axis).any():
            return True
    return False


def add_lesion(kind: str, rng: np.random.Generator, anatomy: Anatomy, spacing_mm: float) -> np.ndarray:
    """Draw a ``kind`` lesion into ``anatomy`` (fractions updated in place); return the label map.

    New fractions are added for the lesion classes (``necrosis``, ``edema``,
    ``nonenhancing``, ``enhancing`` for a tumour; ``infarct`` for a stroke), and
    the healthy fractions reduced where the lesion sits. Label: uint8 (x, y, z).
    """
    attempt_draw = {"tumor": _try_tumour, "stroke": _try_stroke}[kind]
    shape = anatomy.outline_distance_mm.shape
    for _ in range(MAX_ATTEMPTS):
        drawn = attempt_draw(rng, anatomy, spacing_mm)
        if drawn is not None and not _cut_by_box(drawn[0], drawn[2], shape):
            break
    else:
        raise RuntimeError(f"could not place a {kind} lesion in {MAX_ATTEMPTS} attempts at {spacing_mm} mm")
    box, box_fractions, box_label = drawn
    for name, values in box_fractions.items():
        if name not in anatomy.fractions:
            anatomy.fractions[name] = np.zeros(shape, dtype=np.float32)
        anatomy.fractions[name][box] = values
    label = np.zeros(shape, dtype=np.uint8)
    label[box] = box_label
    return label
