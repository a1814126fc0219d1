"""The simulated-click protocol with scripted methods: clicks, signs, carry-forward, NoC."""

import numpy as np
import pytest

from ctsam3d.evaluation.methods import InteractiveMethod
from ctsam3d.evaluation.protocol import ProtocolConfig, describe_protocol, run_structure


class Scripted(InteractiveMethod):
    """Returns the masks of a script in order and records the clicks it receives."""

    name = "scripted"

    def __init__(self, masks):
        self.masks = masks
        self.received = []

    def start(self, image):
        pass

    def reset(self):
        self.received = []

    def click(self, index_ijk, positive):
        self.received.append((tuple(index_ijk), positive))
        return self.masks[min(len(self.received), len(self.masks)) - 1].astype(np.uint8)


def box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


SHAPE = (16, 20, 24)
TARGET = box(SHAPE, (3, 4, 5), (12, 16, 20))


def test_clicks_signs_and_index_order():
    too_big = box(SHAPE, (3, 4, 5), (12, 16, 23))  # false slab x 20..22 (3 thick)
    half = box(SHAPE, (3, 4, 5), (12, 16, 12))  # misses x 12..19
    m = Scripted([half, too_big, TARGET])
    res = run_structure(m, TARGET, (1.0, 1.0, 1.0), ProtocolConfig(clicks=5), case="c", structure="s")
    # click 1: target's EDT maximum, positive, given to the method as (i, j, k) = (x, y, z)
    (ijk1, pos1), (ijk2, pos2), (ijk3, pos3) = m.received
    assert pos1 and TARGET[ijk1[2], ijk1[1], ijk1[0]]
    assert res.clicks[0][:3] == [ijk1[2], ijk1[1], ijk1[0]]
    # click 2: in the missed part (x >= 12), positive; click 3: in the false slab, negative
    assert pos2 and ijk2[0] >= 12 and TARGET[ijk2[2], ijk2[1], ijk2[0]]
    assert not pos3 and ijk3[0] >= 20
    # perfect after click 3: no more clicks, values carried forward to K
    assert len(m.received) == 3 and len(res.time_s) == 3
    assert res.dice[2:] == [1.0, 1.0, 1.0] and res.nsd[2:] == [1.0, 1.0, 1.0]
    assert res.dice[0] == pytest.approx(2 * half.sum() / (half.sum() + TARGET.sum()))
    assert res.dice[1] == pytest.approx(2 * 15 / 33)  # x extent 18 vs 15
    assert res.noc == {"80": 2, "85": 2, "90": 2}


def test_never_reached_counts_k_plus_one():
    nothing = np.zeros(SHAPE, bool)
    m = Scripted([nothing])
    res = run_structure(m, TARGET, (2.0, 1.0, 1.0), ProtocolConfig(clicks=4), case="c", structure="s")
    assert res.dice == [0.0] * 4 and res.noc == {"80": 5, "85": 5, "90": 5}
    assert all(p for *_, p in res.clicks)  # only misses -> only positive clicks


def test_a_clicked_voxel_is_never_clicked_again():
    # a method that never changes its mask: before the fix the protocol handed it the same
    # (negative) click at the false slab's deepest voxel K - 1 times
    too_big = box(SHAPE, (3, 4, 5), (12, 16, 23))  # false slab x 20..22
    m = Scripted([too_big])
    res = run_structure(m, TARGET, (1.0, 1.0, 1.0), ProtocolConfig(clicks=6), case="c", structure="s")
    zyx = [tuple(c[:3]) for c in res.clicks]
    assert len(zyx) == 6 and len(set(zyx)) == 6
    assert all(not p for *_, p in res.clicks[1:])  # all in the false slab, each on a new voxel
    assert all(too_big[c] and not TARGET[c] for c in zyx[1:])
    assert describe_protocol(ProtocolConfig())["repeat_clicks"] is False


def test_replay_uses_given_clicks():
    clicks = [[7, 10, 12, 1], [7, 10, 6, 0]]
    m = Scripted([TARGET])
    res = run_structure(m, TARGET, (1, 1, 1), ProtocolConfig(clicks=3), case="c", structure="s", replay=clicks)
    assert m.received == [((12, 10, 7), True), ((6, 10, 7), False)]
    assert res.clicks == clicks and len(res.dice) == 3


def test_random_first_click_is_seeded_and_inside():
    cfg = ProtocolConfig(clicks=1, first="random", seed=3)
    firsts = []
    for _ in range(2):
        m = Scripted([TARGET])
        run_structure(m, TARGET, (1, 1, 1), cfg, case="c", structure="s")
        firsts.append(m.received[0][0])
    assert firsts[0] == firsts[1]
    i, j, k = firsts[0]
    assert TARGET[k, j, i]


def test_protocol_description_states_rules():
    d = describe_protocol(ProtocolConfig(clicks=7))
    assert d["clicks"] == 7 and "8" in d["noc"] and "skipped" in d["description"]


class ShapeScripted(Scripted):
    """Scripted method that also takes shapes (records them)."""

    supports_shapes = True

    def __init__(self, masks):
        super().__init__(masks)
        self.shapes = []

    def prompt(self, shape):
        self.shapes.append(shape)
        self.received.append(("shape", shape.kind))
        return self.masks[0].astype(np.uint8)


@pytest.mark.parametrize("kind", ["box2d", "lasso", "scribble"])
def test_first_prompt_shape_then_clicks(kind):
    half = box(SHAPE, (3, 4, 5), (12, 16, 12))
    m = ShapeScripted([half, TARGET])
    cfg = ProtocolConfig(clicks=3, first_prompt=kind)
    res = run_structure(m, TARGET, (1.0, 1.0, 1.0), cfg, case="c", structure="s")
    assert m.received[0] == ("shape", kind) and len(m.shapes) == 1
    assert m.shapes[0].axis == 0 and res.first_prompt["kind"] == kind
    assert res.dice[0] == pytest.approx(2 * half.sum() / (half.sum() + TARGET.sum()))
    assert m.received[1][1] is True  # then a corrective (positive) click
    assert res.dice[1:] == [1.0, 1.0]
    again = ShapeScripted([half, TARGET])
    run_structure(again, TARGET, (1.0, 1.0, 1.0), cfg, case="c", structure="s")
    assert np.array_equal(again.shapes[0].points, m.shapes[0].points)  # seeded per case/structure
    assert "replaced by" in describe_protocol(cfg)["description"] and describe_protocol(cfg)["first_prompt"] == kind


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_first_prompt_on_another_axis(axis):
    m = ShapeScripted([TARGET])
    cfg = ProtocolConfig(clicks=1, first_prompt="lasso", prompt_axis=axis)
    run_structure(m, TARGET, (1.0, 1.0, 1.0), cfg, case="c", structure="s")
    shape = m.shapes[0]
    assert shape.axis == axis and np.all(shape.points[:, axis] == shape.index)  # a contour on one slice of that axis
    desc = describe_protocol(cfg)
    # the default axis leaves the protocol as written before the option (committed reports still merge)
    assert ("first_prompt_axis" in desc) == (axis != 0)
    assert ("largest axial slice" in desc["description"]) == (axis == 0)
    assert ("coronal" in desc["description"] or "sagittal" in desc["description"]) is False  # an array axis is no plane


@pytest.mark.parametrize(
    "code, plane, axis",
    [("LPS", "sagittal", 2), ("LPS", "coronal", 1), ("PLI", "sagittal", 1), ("PLI", "coronal", 2), ("PLI", "axial", 0)],
)
def test_first_prompt_on_an_anatomical_plane(code, plane, axis):
    from ctsam3d.geometry import direction_from_code

    m = ShapeScripted([TARGET])
    cfg = ProtocolConfig(clicks=1, first_prompt="lasso", prompt_plane=plane)
    res = run_structure(m, TARGET, (1.0, 1.0, 1.0), cfg, case="c", structure="s", direction=direction_from_code(code))
    assert m.shapes[0].axis == axis and res.first_prompt["axis"] == axis  # the array axis used is recorded
    desc = describe_protocol(cfg)
    assert desc["first_prompt_plane"] == plane and "first_prompt_axis" not in desc
    assert f"largest {plane} slice" in desc["description"]


def test_prompt_axis_is_checked():
    from ctsam3d.errors import InputError
    from ctsam3d.evaluation.runner import evaluate

    with pytest.raises(InputError, match="--prompt-axis"):
        evaluate("unused", "pairs", [ShapeScripted([TARGET])], first_prompt="lasso", prompt_axis=3)
    with pytest.raises(InputError, match="--prompt-axis: must be axial, coronal, sagittal"):
        evaluate("unused", "pairs", [ShapeScripted([TARGET])], first_prompt="lasso", prompt_axis="transverse")
