import numpy as np
import pytest

from ottools import mesh_measure, sliced_wasserstein


def _tetra():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])  # outward normals
    return v, f


def test_area_measure_of_a_tetrahedron(dtype):
    v, f = _tetra()
    pts, w = mesh_measure(v.astype(dtype), f)
    assert pts.dtype == dtype and w.dtype == dtype
    areas = np.array([0.5, 0.5, 0.5, np.sqrt(3) / 2])
    np.testing.assert_allclose(w, areas / areas.sum(), rtol=1e-6)
    np.testing.assert_allclose(pts, v[f].mean(axis=1), rtol=1e-6, atol=1e-7)


def test_varifold_normals_are_unit_and_oriented():
    v, f = _tetra()
    pts, w = mesh_measure(v, f, kind="varifold", normal_scale=2.0)
    assert pts.shape == (4, 6)
    normals = pts[:, 3:] / 2.0
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(normals[:3], [[0, 0, -1], [0, -1, 0], [-1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(normals[3], np.ones(3) / np.sqrt(3), rtol=1e-12)
    # outward: the normal points away from the centre of mass
    centre = v.mean(0)
    assert np.all(np.einsum("ij,ij->i", normals, pts[:, :3] - centre) > 0)


def test_degenerate_faces_dropped_and_renormalized():
    v, f = _tetra()
    v = np.vstack([v, [[2.0, 0, 0]]])
    f2 = np.vstack([f, [[0, 1, 4]]])  # collinear: zero area
    pts, w = mesh_measure(v, f2)
    pts0, w0 = mesh_measure(v[:4], f)
    np.testing.assert_allclose(pts, pts0)
    np.testing.assert_allclose(w, w0)
    assert w.sum() == pytest.approx(1.0, rel=1e-14)


def test_meshes_compared_with_sliced_distances():
    v, f = _tetra()
    pts, w = mesh_measure(v, f)
    shift = np.array([0.3, -0.2, 0.1])
    pts2, w2 = mesh_measure(v + shift, f)
    assert sliced_wasserstein(pts, pts, w, w, rng=0) == 0.0
    # a translated mesh: SW_2 over an orthonormal basis is |shift| / sqrt(3) exactly
    got = sliced_wasserstein(pts, pts2, w, w2, directions=np.eye(3))
    assert got == pytest.approx(np.linalg.norm(shift) / np.sqrt(3), rel=1e-12)
    # flipping the orientation moves the varifold but not the area measure
    vf, wf = mesh_measure(v, f[:, ::-1], kind="varifold")
    va, wa = mesh_measure(v, f, kind="varifold")
    assert sliced_wasserstein(va, vf, wa, wf, rng=0) > 0.1
    pf, _ = mesh_measure(v, f[:, ::-1])
    np.testing.assert_allclose(pf, pts)


@pytest.mark.parametrize("vertices, faces, kwargs, exc, match", [
    (np.zeros((4, 2)), [[0, 1, 2]], {}, ValueError, r"`vertices` must have shape \(V, 3\)"),
    (np.full((4, 3), np.nan), [[0, 1, 2]], {}, ValueError, "`vertices` must be finite"),
    (np.eye(3), [[0, 1, 3]], {}, ValueError, "`faces` indices must lie in"),
    (np.eye(3), [[0, -1, 2]], {}, ValueError, "`faces` indices must lie in"),
    (np.eye(3), [[0.0, 1.0, 2.0]], {}, TypeError, "`faces` must hold integer"),
    (np.eye(3), [[0, 1]], {}, ValueError, r"`faces` must have shape \(F, 3\)"),
    (np.eye(3), [[0, 1, 1]], {}, ValueError, "all degenerate"),
    (np.eye(3), [[0, 1, 2]], {"kind": "normals"}, ValueError, "kind"),
    (np.eye(3), [[0, 1, 2]], {"normal_scale": 0.0}, ValueError, "`normal_scale`"),
])
def test_bad_input(vertices, faces, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mesh_measure(vertices, np.asarray(faces), **kwargs)


@pytest.mark.parametrize("k, shift", [(200, 1e5), (60, 1e7)])
def test_small_faces_far_from_the_origin_are_kept(k, shift):
    """The degeneracy test is each face's own (the sine of its angle): a threshold on the
    largest coordinate dropped every small face of a mesh shifted by 1e5 (the right half
    of the square lost its mass), or called every face degenerate."""
    def grid(x0, x1, k, off):
        gx, gy = np.linspace(x0, x1, k + 1), np.linspace(0.0, 1.0, k + 1)
        V = np.array([[x, y, 0.0] for y in gy for x in gx])
        F = [[j * (k + 1) + i, j * (k + 1) + i + 1, (j + 1) * (k + 1) + i + 1]
             for j in range(k) for i in range(k)]
        F += [[j * (k + 1) + i, (j + 1) * (k + 1) + i + 1, (j + 1) * (k + 1) + i]
              for j in range(k) for i in range(k)]
        return V, np.array(F) + off

    V1, F1 = grid(0.0, 0.5, 1, 0)
    V2, F2 = grid(0.5, 1.0, k, len(V1))
    V, F = np.vstack([V1, V2]), np.vstack([F1, F2])
    pts0, w0 = mesh_measure(V, F)
    pts, w = mesh_measure(V + shift, F)
    assert len(w) == len(F) == len(w0)
    np.testing.assert_allclose(w, w0, rtol=1e-6)
    np.testing.assert_allclose(pts - shift, pts0, atol=1e-9 * shift)
    assert w[pts[:, 0] - shift > 0.5].sum() == pytest.approx(0.5, rel=1e-6)


def test_collinear_face_far_from_the_origin_is_degenerate():
    """Vertices p0 + t d (t = 0, 1, 2) at 1e5: the rounding of the coordinates leaves a
    cross product of noise; the face is dropped (not kept with a random normal)."""
    s = np.array([1e5, 2e5, 3e5])
    d = np.array([1e-3, 2e-3, 0.5e-3])
    V = np.stack([s, s + d, s + 2 * d, s + np.array([1.0, 0, 0]), s + np.array([0, 1.0, 0])])
    with pytest.raises(ValueError, match="all degenerate"):
        mesh_measure(V, np.array([[0, 1, 2]]))
    pts, w = mesh_measure(V, np.array([[0, 1, 2], [0, 3, 4]]), kind="varifold")
    assert len(w) == 1 and w[0] == 1.0
    np.testing.assert_allclose(pts[0, 3:], [0.0, 0.0, 1.0])


@pytest.mark.parametrize("far", [1e80, 1e200])
def test_unused_vertices_do_not_change_the_measure(far):
    """The scale came from every vertex: one unused vertex at 1e81 made the faces'
    cross products underflow (all degenerate); at 1e80 weights off by 1e-5."""
    V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1.7, 0, 0], [0, 1.3, 0]], float)
    F = np.array([[0, 1, 2], [0, 3, 4]])
    pts, w = mesh_measure(V, F)
    np.testing.assert_allclose(w, [0.5, 1.105] / np.float64(1.605), rtol=1e-15)
    pts2, w2 = mesh_measure(np.vstack([V, [[far, 0, 0]]]), F)
    np.testing.assert_array_equal(w2, w)
    np.testing.assert_array_equal(pts2, pts)
