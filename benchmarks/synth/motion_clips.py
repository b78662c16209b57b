"""Labelled synthetic video clips for motion detection: textured scenes with known motion intervals.

A scene is a textured yard (sky, brick wall, trees, hedge, lawn, path, road) seen by a camera with
auto-exposure and sensor noise. People walk and cars drive along keyframed paths; the lighting
changes (slow ramps, lamps switching, an IR night-mode switch, lightning, drifting cloud shadows);
trees sway in the wind. Ground truth marks when something *moves*: an actor that is at least 30 %
inside the frame and changed position since the previous frame. Lighting, swaying leaves and noise
never count. Intervals closer than `MERGE_GAP` seconds are merged (the evaluation merges detections
the same way).

`write_clip(path, scene)` renders a scene to an H.264 MP4 (through ffmpeg, or OpenCV's writer when
ffmpeg is missing) and writes its ground truth next to it as JSON (`load_ground_truth`).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from benchmarks.synth import _textures as tex
from edged.analysis.motion.intervals import MERGE_GAP, motion_intervals

_MIN_VISIBLE = 0.3  # share of an actor inside the frame before it counts
_AE_TIME = 0.8  # auto-exposure time constant (s)
_AE_TARGET = 0.42  # mean brightness auto-exposure aims for
_AE_MAX_GAIN = 4.0  # at night the gain tops out: dark, noisy frames
Interval = tuple[float, float]
Curve = Callable[[float], float]


@dataclass(frozen=True)
class GroundTruth:
    """What happens in a clip: motion intervals (s) and the lighting/camera events (for reports)."""

    scene: str
    description: str
    duration: float
    fps: float
    width: int
    height: int
    motion: tuple[Interval, ...]
    events: tuple[tuple[float, str], ...] = ()
    scored_from: float = 0.0  # s: a lead-in before this lets detectors settle; evaluations skip it

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        d = json.loads(text)
        return cls(d["scene"], d["description"], float(d["duration"]), float(d["fps"]), int(d["width"]),
                   int(d["height"]), tuple((float(a), float(b)) for a, b in d["motion"]),
                   tuple((float(t), str(kind)) for t, kind in d.get("events", ())),
                   float(d.get("scored_from", 0.0)))


def ground_truth_path(video: str | Path) -> Path:
    """Where a clip's ground truth lives: next to it, `.json` instead of the video suffix."""
    return Path(video).with_suffix(".json")


def load_ground_truth(video: str | Path) -> GroundTruth:
    return GroundTruth.from_json(ground_truth_path(video).read_text())


# --- scene description ------------------------------------------------------------------------------

Key = tuple[float, float, float]  # (t seconds, x centre as a fraction of width, y ground as a fraction of height)


@dataclass(frozen=True)
class Actor:
    """Something that moves along straight segments between keyframes; absent outside them."""

    kind: Literal["person", "car"]
    keys: tuple[Key, ...]
    colour_seed: int = 0
    scale: float = 1.0
    opacity: float = 1.0  # < 1: the figure is blended into the scene behind it (low contrast)

    def position(self, t: float) -> tuple[float, float] | None:
        keys = self.keys
        if t < keys[0][0] or t > keys[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(keys):
            if t0 <= t <= t1:
                u = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return x0 + u * (x1 - x0), y0 + u * (y1 - y0)
        return keys[-1][1], keys[-1][2]


def _const(value: float) -> Curve:
    return lambda _t: value


_FULL, _OFF = _const(1.0), _const(0.0)


def _steps(times: Sequence[float], low: float, high: float) -> Curve:
    """`low` until times[0], then alternating high/low at each time."""
    def curve(t: float) -> float:
        return high if sum(1 for s in times if t >= s) % 2 else low
    return curve


def _ramp(t0: float, t1: float, a: float, b: float) -> Curve:
    def curve(t: float) -> float:
        u = min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        return a + (b - a) * (0.5 - 0.5 * math.cos(math.pi * u))
    return curve


@dataclass(frozen=True)
class SceneSpec:
    """A scene: its actors and how light, camera and wind behave over time."""

    name: str
    description: str
    duration: float
    actors: tuple[Actor, ...] = ()
    ambient: Curve = _FULL  # daylight level
    lamp: Curve = _OFF  # porch lamp level
    ir: Callable[[float], bool] = lambda _t: False  # camera in IR night mode
    flashes: tuple[float, ...] = ()  # lightning times
    wind: Curve = _OFF  # leaf sway amplitude, in pixels at 360 rows
    shadows: float = 0.0  # drifting cloud-shadow strength (0: none)
    noise: float = 0.012  # sensor noise at unit gain (fraction of full scale)
    events: tuple[tuple[float, str], ...] = ()
    seed: int = 0


def _walker(t0: float, t1: float, y: float = 0.68, left_to_right: bool = True, seed: int = 0,
            scale: float = 1.0) -> Actor:
    xa, xb = (-0.08, 1.08) if left_to_right else (1.08, -0.08)
    return Actor("person", ((t0, xa, y), (t1, xb, y)), seed, scale)


def _gust(t: float) -> float:
    """Wind that never stops, with gusts."""
    return 5.0 + 4.0 * math.sin(2 * math.pi * t / 17.0) ** 2 + 2.5 * math.sin(2 * math.pi * t / 5.3) ** 2


def _scenes() -> dict[str, SceneSpec]:
    lamp_times = (8.0, 20.0, 32.0, 50.0)
    flash_times = (7.0, 7.3, 19.0, 31.5, 31.7, 44.0, 53.0)
    return {s.name: s for s in (
        SceneSpec("walkers", "daylight; people cross the path and the lawn, two of them overlapping", 60.0,
                  (_walker(5, 13, seed=1), _walker(20, 26, y=0.52, left_to_right=False, seed=2, scale=0.7),
                   _walker(33, 43, seed=3), _walker(35, 44, y=0.74, left_to_right=False, seed=4),
                   _walker(52, 58, y=0.6, seed=5, scale=0.85)), seed=11),
        SceneSpec("parking", "a car drives in, parks for half a minute and leaves; a person walks by", 70.0,
                  (Actor("car", ((5, -0.3, 0.97), (10, 0.3, 0.97), (12, 0.45, 0.97), (45, 0.45, 0.97),
                                 (47, 0.55, 0.97), (52, 1.3, 0.97)), 7),
                   _walker(25, 33, seed=8)), seed=12),
        SceneSpec("distant", "small, far-away people cross the back of the lawn slowly", 60.0,
                  (_walker(5, 20, y=0.5, seed=21, scale=0.45), _walker(28, 41, y=0.48, left_to_right=False,
                                                                          seed=22, scale=0.4),
                   _walker(47, 58, y=0.55, seed=23, scale=0.5)), seed=23),
        SceneSpec("loiter", "a person walks in, stands still for 15 s, then walks away", 45.0,
                  (Actor("person", ((5, -0.08, 0.66), (11, 0.5, 0.66), (26, 0.5, 0.66), (32, 1.08, 0.66)), 24),),
                  seed=24),
        SceneSpec("dusk_walk", "people walk by while daylight fades fast and cloud shadows drift", 60.0,
                  (_walker(14, 21, seed=26), _walker(33, 41, y=0.6, left_to_right=False, seed=27, scale=0.85)),
                  ambient=_ramp(8, 45, 1.0, 0.3), shadows=0.35, events=((8.0, "dimming"),), seed=26),
        SceneSpec("trees", "strong gusting wind sways the trees all the time; one person walks by", 60.0,
                  (_walker(30, 38, seed=9),), wind=_gust, seed=13),
        SceneSpec("night", "low light and high sensor gain; a person walks slowly, twice", 60.0,
                  (_walker(12, 24, seed=10), _walker(40, 50, left_to_right=False, seed=11)),
                  ambient=_const(0.07), noise=0.02, seed=14),
        SceneSpec("lights", "night porch; a lamp switches on and off four times, nobody there", 60.0,
                  ambient=_const(0.08), lamp=_steps(lamp_times, 0.0, 1.0),
                  events=tuple((t, "lamp_on" if i % 2 == 0 else "lamp_off") for i, t in enumerate(lamp_times)),
                  seed=15),
        SceneSpec("porch", "night porch; the lamp switches while people come and go", 60.0,
                  (_walker(12, 19, seed=12), _walker(38, 45, left_to_right=False, seed=13)),
                  ambient=_const(0.08), lamp=_steps((9.0, 25.0, 36.0), 0.0, 1.0),
                  events=((9.0, "lamp_on"), (25.0, "lamp_off"), (36.0, "lamp_on")), seed=16),
        SceneSpec("ramp", "daylight fades to dusk over a minute and comes back; nobody there", 90.0,
                  ambient=lambda t: _ramp(5, 60, 1.0, 0.2)(t) if t < 60 else _ramp(60, 85, 0.2, 0.7)(t),
                  events=((5.0, "dimming"), (60.0, "brightening")), seed=17),
        SceneSpec("ir_switch", "dusk; the camera switches to IR night mode and back; one person in IR", 60.0,
                  (_walker(25, 32, seed=14),), ambient=_const(0.12), ir=lambda t: 15.0 <= t < 45.0,
                  events=((15.0, "ir_on"), (45.0, "ir_off")), seed=18),
        SceneSpec("lightning", "night thunderstorm: single and double lightning flashes, nobody there", 60.0,
                  ambient=_const(0.08), flashes=flash_times, events=tuple((t, "flash") for t in flash_times),
                  seed=19),
        SceneSpec("shadows", "daylight with cloud shadows drifting across the whole scene; nobody there", 60.0,
                  shadows=0.5, seed=20),
        SceneSpec("noise", "very dark static scene at maximum gain: noise only", 60.0,
                  ambient=_const(0.035), noise=0.025, seed=21),
        SceneSpec("mixed", "test fixture: people and a car between a lamp switching on and off and a lightning flash",
                  45.0, (_walker(4, 10, seed=17), Actor("car", ((17, -0.3, 0.97), (22, 1.3, 0.97)), 18),
                         _walker(30, 38, y=0.55, left_to_right=False, seed=19, scale=0.7)),
                  ambient=_const(0.3), lamp=_steps((13.0, 41.0), 0.0, 1.0), flashes=(27.0,),
                  events=((13.0, "lamp_on"), (27.0, "flash"), (41.0, "lamp_off")), seed=25),
        SceneSpec("sample", "a person walks by, the porch lamp switches on, a car drives past", 30.0,
                  (_walker(4, 11, seed=15), Actor("car", ((19, -0.3, 0.97), (25, 1.3, 0.97)), 16)),
                  ambient=_const(0.35), lamp=_steps((15.0,), 0.0, 1.0), events=((15.0, "lamp_on"),), seed=22),
    )}


SCENES: dict[str, SceneSpec] = _scenes()
# Clips without any real motion: every detection on them is false motion.
LIGHTING_SCENES = ("lights", "ramp", "ir_switch", "lightning", "shadows")


# --- small, slow movers ---------------------------------------------------------------------------------
#
# One figure covering 0.5-2 % of the frame (its box) crosses a static scene slowly, stops for a few
# seconds, and walks on. Each scene draws its size, speed, contrast (the figure's opacity over the
# scene), sensor noise, light level and path from a Latin hypercube, so a set spans every range evenly.
# The "tune" set is what the detector was tuned on; the "heldout" set has other seeds and so other
# sizes, speeds, contrasts, noise, backdrops and clothes, and is only ever reported.

_SMALL_WALK = 12.0  # s: each of the two walks
_SMALL_PAUSE = 5.0  # s: standing still between them (not motion)
_SMALL_START = 4.0  # s into the scene
_SMALL_SETS = {"tune": (8, 16), "heldout": (10, 61)}  # set -> (scenes, seed)


@dataclass(frozen=True)
class SmallMover:
    """The parameters of one small-slow-mover scene."""

    size: float  # share of the frame covered by the figure's box
    speed: float  # frame widths per second
    opacity: float  # 1: the figure as it is; lower: blended into the scene (less contrast)
    noise: float  # sensor noise at unit gain (fraction of full scale)
    ambient: float  # daylight level (a dark scene means high gain: more noise)
    y: float  # ground line, fraction of the height
    left_to_right: bool
    seed: int

    def describe(self) -> str:
        return (f"figure {100 * self.size:.1f} % of the frame, {100 * self.speed:.1f} % of the width per s,"
                f" opacity {self.opacity:.2f}, noise {self.noise:.3f}, light {self.ambient:.2f}")

    def spec(self, name: str) -> SceneSpec:
        depth = 0.55 + 0.45 * (self.y - 0.45) / 0.55  # as in `actor_box`
        # Box area = 0.5 h^2 for a person; at 16:9, h / height = sqrt(2 * size * 16 / 9).
        scale = math.sqrt(2.0 * self.size * 16.0 / 9.0) / (0.34 * depth)
        travel = self.speed * _SMALL_WALK
        step = travel if self.left_to_right else -travel  # two walks of `travel` each, meeting at the centre
        x0, x1 = 0.5 - step, 0.5
        t0, t1 = _SMALL_START, _SMALL_START + _SMALL_WALK
        t2, t3 = t1 + _SMALL_PAUSE, t1 + _SMALL_PAUSE + _SMALL_WALK
        keys = ((t0, x0, self.y), (t1, x1, self.y), (t2, x1, self.y), (t3, x1 + step, self.y))
        actor = Actor("person", keys, self.seed, scale, self.opacity)
        return SceneSpec(name, self.describe(), t3 + _SMALL_START, (actor,), ambient=_const(self.ambient),
                         noise=self.noise, seed=self.seed)


def small_movers(which: str) -> dict[str, SceneSpec]:
    """The scenes of one set of small slow movers ("tune" or "heldout"), by name."""
    count, seed = _SMALL_SETS[which]
    rng = np.random.default_rng(seed)
    # Latin hypercube: each parameter's range cut into `count` strata, each stratum used once.
    u = (np.argsort(rng.random((6, count)), axis=1) + rng.random((6, count))) / count
    out = {}
    for i in range(count):
        v = [float(x) for x in u[:, i]]
        mover = SmallMover(size=0.005 * 4.0 ** v[0], speed=0.008 + 0.022 * v[1], opacity=0.35 + 0.65 * v[2],
                           noise=0.006 + 0.024 * v[3], ambient=0.15 * 6.0 ** v[4], y=0.5 + 0.25 * v[5],
                           left_to_right=bool(rng.integers(2)), seed=seed * 100 + i)
        name = f"small-{which[0]}{i}"
        out[name] = mover.spec(name)
    return out


SMALL_MOVER_SCENES: dict[str, SceneSpec] = {**small_movers("tune"), **small_movers("heldout")}


def scene_spec(name: str) -> SceneSpec:
    """A scene of `SCENES` or of `SMALL_MOVER_SCENES` by name (KeyError when neither has it)."""
    return SCENES[name] if name in SCENES else SMALL_MOVER_SCENES[name]


# --- rendering ---------------------------------------------------------------------------------------


@dataclass
class _Backdrop:
    albedo: np.ndarray  # (h, w, 3) 0..1
    ir_albedo: np.ndarray  # (h, w, 3) grey, foliage bright
    trees: list[tuple[int, int, np.ndarray, np.ndarray]] = field(default_factory=list)  # x, y, colour, alpha
    lamp_field: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1), np.float32))
    ir_field: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1), np.float32))
    shadow_tex: np.ndarray = field(default_factory=lambda: np.ones((1, 1), np.float32))


def _paint(dst: np.ndarray, colour: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """Alpha-composite `colour` onto `dst` with its top-left corner at (x, y), clipped to the frame."""
    h, w = alpha.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(dst.shape[1], x + w), min(dst.shape[0], y + h)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = dst[y0:y1, x0:x1]
    region *= 1 - a
    region += a * colour[y0 - y:y1 - y, x0 - x:x1 - x]


def _build_backdrop(rng: np.random.Generator, w: int, h: int) -> _Backdrop:
    img = tex.sky(h, w)
    horizon = int(0.45 * h)
    wall_x, wall_y = int(rng.uniform(0.5, 0.6) * w), int(0.08 * h)
    img[wall_y:horizon, wall_x:] = tex.bricks(rng, horizon - wall_y, w - wall_x, max(3, h // 45))
    for i in range(3):  # dark windows with frames
        wx, wy = wall_x + int((0.08 + 0.14 * i) * w), wall_y + int(0.07 * h)
        cv2.rectangle(img, (wx, wy), (wx + int(0.08 * w), wy + int(0.14 * h)), (0.85, 0.85, 0.85), -1)
        cv2.rectangle(img, (wx + 3, wy + 3), (wx + int(0.08 * w) - 3, wy + int(0.14 * h) - 3), (0.2, 0.15, 0.12), -1)
    img[horizon:] = tex.grass(rng, h - horizon, w)
    path_y0, path_y1 = int(0.58 * h), int(0.72 * h)
    img[path_y0:path_y1] = tex.asphalt(rng, path_y1 - path_y0, w) * 1.25
    road_y = int(0.8 * h)
    img[road_y:] = tex.asphalt(rng, h - road_y, w) * 0.8
    cv2.line(img, (0, int(0.9 * h)), (w, int(0.9 * h)), (0.8, 0.8, 0.8), max(1, h // 120))
    hedge_c, hedge_a = tex.foliage(rng, int(0.1 * h), w)
    _paint(img, hedge_c * 0.7, np.clip(hedge_a * 1.6, 0, 1), 0, horizon - int(0.06 * h))
    trees = []
    for cx, cy, tw, th in ((0.18, 0.2, 0.3, 0.36), (0.42, 0.16, 0.2, 0.3)):
        tw_px, th_px = int(tw * w), int(th * h)
        x, y = int((cx + rng.uniform(-0.03, 0.03)) * w - tw_px / 2), int(cy * h - th_px / 2)
        trunk_x = x + tw_px // 2
        cv2.rectangle(img, (trunk_x - max(2, w // 160), y + th_px // 2), (trunk_x + max(2, w // 160), horizon),
                      (0.12, 0.2, 0.28), -1)
        colour, alpha = tex.foliage(rng, th_px, tw_px)
        trees.append((x, y, colour, alpha))
    # IR: grey, vegetation reflects near-infrared strongly.
    luma = img @ np.asarray((0.25, 0.45, 0.30), np.float32)
    green = np.clip(img[..., 1] - 0.5 * (img[..., 0] + img[..., 2]), 0, 1)
    ir = np.clip(0.7 * luma + 1.2 * green, 0, 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ir_field = 1.4 * np.exp(-(((xx - w / 2) / (0.6 * w)) ** 2 + ((yy - h * 0.6) / (0.7 * h)) ** 2))
    lamp_field = 2.2 * np.exp(-(((xx - 0.72 * w) / (0.35 * w)) ** 2 + ((yy - 0.35 * h) / (0.45 * h)) ** 2)) + 0.25
    clouds = tex.fractal_noise(rng, h, 2 * w, base=3, octaves=3)
    clouds = np.concatenate([clouds, clouds[:, ::-1]], axis=1)  # mirrored: periodic over 4w, no seam
    shadow_tex = np.concatenate([clouds, clouds[:, :w]], axis=1)  # any w-wide window of one period
    return _Backdrop(img, np.repeat(ir[..., None], 3, 2), trees, lamp_field[..., None].astype(np.float32),
                     ir_field[..., None].astype(np.float32), shadow_tex)


def _person_sprite(height: int, phase: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A walking figure (colour, alpha), legs and arms swinging with `phase`."""
    s = max(12, height)
    w = max(6, int(0.5 * s))
    colour = np.zeros((s, w, 3), np.float32)
    alpha = np.zeros((s, w), np.float32)
    shirt = rng.uniform(0.1, 0.9, 3)
    trousers = rng.uniform(0.05, 0.5, 3)
    skin = np.asarray((0.55, 0.65, 0.8)) * rng.uniform(0.5, 1.0)
    cx = w // 2
    swing = math.sin(phase) * 0.16 * s
    th = max(2, int(0.1 * s))
    parts: tuple[tuple[np.ndarray, Callable[[np.ndarray], object]], ...] = (
        (trousers, lambda c: cv2.line(c, (cx, int(0.55 * s)), (int(cx + swing), s - th), 1.0, th)),
        (trousers, lambda c: cv2.line(c, (cx, int(0.55 * s)), (int(cx - swing), s - th), 1.0, th)),
        (shirt, lambda c: cv2.ellipse(c, (cx, int(0.38 * s)), (int(0.16 * s), int(0.2 * s)), 0, 0, 360, 1.0, -1)),
        (shirt * 0.8, lambda c: cv2.line(c, (cx, int(0.24 * s)), (int(cx - 0.8 * swing), int(0.55 * s)), 1.0, th)),
        (skin, lambda c: cv2.circle(c, (cx, int(0.1 * s)), max(2, int(0.08 * s)), 1.0, -1)),
    )
    for rgb, draw in parts:
        canvas = np.zeros((s, w), np.float32)
        draw(canvas)
        layer = cv2.GaussianBlur(canvas, (3, 3), 0)
        colour += layer[..., None] * (np.asarray(rgb, np.float32) - colour)
        alpha = np.maximum(alpha, layer)
    grain = 0.85 + 0.3 * rng.random((s, w, 1)).astype(np.float32)
    return np.clip(colour * grain, 0, 1), alpha


def _car_sprite(height: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A side view of a car: body, cabin with windows, wheels."""
    s = max(10, height)
    w = int(2.4 * s)
    colour = np.zeros((s, w, 3), np.float32)
    alpha = np.zeros((s, w), np.float32)
    paint = np.asarray(rng.uniform(0.1, 0.9, 3), np.float32)

    def layer(draw: Callable[[np.ndarray], object], rgb: np.ndarray) -> None:
        nonlocal alpha
        m = np.zeros((s, w), np.float32)
        draw(m)
        colour[...] += m[..., None] * (rgb - colour)
        alpha = np.maximum(alpha, m)

    layer(lambda m: cv2.rectangle(m, (0, int(0.4 * s)), (w - 1, int(0.82 * s)), 1.0, -1), paint)
    cabin = np.asarray([[int(0.25 * w), int(0.4 * s)], [int(0.35 * w), int(0.05 * s)],
                        [int(0.72 * w), int(0.05 * s)], [int(0.85 * w), int(0.4 * s)]], np.int32)
    layer(lambda m: cv2.fillPoly(m, [cabin], 1.0), paint * 0.9)
    window = np.asarray([[int(0.3 * w), int(0.38 * s)], [int(0.38 * w), int(0.12 * s)],
                         [int(0.7 * w), int(0.12 * s)], [int(0.79 * w), int(0.38 * s)]], np.int32)
    layer(lambda m: cv2.fillPoly(m, [window], 1.0), np.asarray((0.45, 0.35, 0.3), np.float32))
    for wx in (0.2, 0.8):
        centre = (int(wx * w), int(0.8 * s))
        layer(functools.partial(cv2.circle, center=centre, radius=int(0.19 * s), color=1.0, thickness=-1),
              np.asarray((0.06, 0.06, 0.06), np.float32))
    return colour, alpha


def actor_box(actor: Actor, t: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Where an actor is drawn at time `t`: (x, y, w, h) in pixels, or None when it is not in the scene.

    People are 0.34 and cars 0.2 of the frame height on the nearest ground line, smaller further
    back (a simple perspective from the feet position).
    """
    pos = actor.position(t)
    if pos is None:
        return None
    depth = 0.55 + 0.45 * (pos[1] - 0.45) / 0.55
    ah = int((0.34 if actor.kind == "person" else 0.2) * depth * actor.scale * height)
    aw = int(ah * (0.5 if actor.kind == "person" else 2.4))
    return int(pos[0] * width - aw / 2), int(pos[1] * height - ah), aw, ah


def _moving(spec: SceneSpec, t: float, width: int, height: int, fps: float) -> bool:
    """Whether any actor visibly moves between the previous frame and the one at `t`."""
    for actor in spec.actors:
        now, before = actor.position(t), actor.position(t - 1.0 / fps)
        box = actor_box(actor, t, width, height)
        if now is None or before is None or box is None:
            continue
        if math.hypot((now[0] - before[0]) * width, (now[1] - before[1]) * height) < 0.25:
            continue
        x, y, aw, ah = box
        inside = max(0, min(width, x + aw) - max(0, x)) * max(0, min(height, y + ah) - max(0, y))
        if inside >= _MIN_VISIBLE * aw * ah:
            return True
    return False


def motion_truth(scene: str, width: int = 640, height: int = 360, fps: float = 10.0, lead_in: float = 0.0,
                 duration: float | None = None) -> tuple[Interval, ...]:
    """The ground-truth motion intervals `write_clip` would write for these settings, without rendering."""
    spec = scene_spec(scene)
    frames = round(((spec.duration if duration is None else duration) + lead_in) * fps)
    return intervals_from_flags([_moving(spec, i / fps - lead_in, width, height, fps) for i in range(frames)], fps)


class _Renderer:
    """Renders one scene frame by frame (auto-exposure has state, so frames come in order)."""

    def __init__(self, spec: SceneSpec, width: int, height: int, fps: float, seed: int) -> None:
        self.spec, self.w, self.h, self.fps = spec, width, height, fps
        rng = np.random.default_rng(spec.seed * 1000 + seed)
        self.backdrop = _build_backdrop(rng, width, height)
        self.noise_bank = [rng.standard_normal((height, width)).astype(np.float32) for _ in range(8)]
        self.rng = rng
        self.exposure = 1.0
        self.sprite_seeds = {id(a): int(rng.integers(1 << 30)) for a in spec.actors}
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self._sway_phase = (xx / width * 7.0 + yy / height * 3.0).astype(np.float32)
        self._grid = (xx, yy)

    def actor_box(self, actor: Actor, t: float) -> tuple[int, int, int, int] | None:
        return actor_box(actor, t, self.w, self.h)

    def moving(self, t: float) -> bool:
        return _moving(self.spec, t, self.w, self.h, self.fps)

    def _scene_albedo(self, t: float, ir: bool) -> np.ndarray:
        bd = self.backdrop
        img: np.ndarray = (bd.ir_albedo if ir else bd.albedo).copy()
        amp = self.spec.wind(t) * self.h / 360.0
        for x, y, colour, alpha in bd.trees:
            c, a = colour, alpha
            if ir:
                g = np.clip(colour @ np.asarray((0.25, 0.45, 0.3), np.float32) * 0.7 + 0.35, 0, 1)
                c = np.repeat(g[..., None], 3, 2)
            if amp > 0:
                c, a = self._sway(c, a, amp, t)
            _paint(img, c, a, x, y)
        for actor in self.spec.actors:
            self._draw_actor(img, actor, t, ir)
        return img

    def _sway(self, colour: np.ndarray, alpha: np.ndarray, amp: float, t: float) -> tuple[np.ndarray, np.ndarray]:
        h, w = alpha.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        height_weight = 1.0 - yy / h  # tops sway most
        phase = self._sway_phase[:h, :w]
        dx = amp * height_weight * (np.sin(2 * np.pi * 0.6 * t + phase) + 0.5 * np.sin(2 * np.pi * 1.7 * t + 2 * phase))
        dy = 0.3 * amp * height_weight * np.sin(2 * np.pi * 0.9 * t + 1.3 * phase)
        mx, my = (xx + dx).astype(np.float32), (yy + dy).astype(np.float32)
        return (cv2.remap(colour, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
                cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))

    def _draw_actor(self, img: np.ndarray, actor: Actor, t: float, ir: bool) -> None:
        box = self.actor_box(actor, t)
        if box is None:
            return
        x, y, aw, ah = box
        rng = np.random.default_rng(self.sprite_seeds[id(actor)])  # same clothes in every frame
        if actor.kind == "person":
            pos = actor.position(t) or (0.0, 0.0)
            colour, alpha = _person_sprite(ah, pos[0] * self.w / max(1, 0.25 * ah) * math.pi / 2, rng)
        else:
            colour, alpha = _car_sprite(ah, rng)
        shadow = np.zeros((max(2, ah // 8), aw), np.float32)
        cv2.ellipse(shadow, (aw // 2, shadow.shape[0] // 2), (aw // 2, shadow.shape[0] // 2), 0, 0, 360,
                    0.45 * actor.opacity, -1)
        _paint(img, np.zeros((*shadow.shape, 3), np.float32), shadow, x, y + ah - shadow.shape[0] // 2)
        if ir:
            colour = np.repeat((colour @ np.asarray((0.3, 0.4, 0.3), np.float32) * 1.2)[..., None], 3, 2)
        _paint(img, colour, alpha * actor.opacity if actor.opacity < 1.0 else alpha, x, y)

    def _illumination(self, t: float, ir: bool) -> np.ndarray | float:
        spec, bd = self.spec, self.backdrop
        if ir:
            return bd.ir_field * 0.5
        light: np.ndarray | float = spec.ambient(t)
        lamp = spec.lamp(t)
        if lamp > 0:
            light = light + lamp * bd.lamp_field
        flash = sum(0.4 * math.exp(-((t - f) / 0.12) ** 2) for f in spec.flashes)
        light = light + flash
        if spec.shadows > 0:
            shift = int(t * 0.04 * self.w) % (4 * self.w)  # the texture repeats seamlessly every 4w
            cover = bd.shadow_tex[:, shift:shift + self.w]
            soft = np.clip((cover - 0.45) * 4.0, 0, 1)
            light = light * (1.0 - spec.shadows * soft)[..., None]
        return light

    def frame(self, index: int, t: float) -> np.ndarray:
        ir = self.spec.ir(t)
        radiance = self._scene_albedo(t, ir) * self._illumination(t, ir)
        mean = float(radiance[::8, ::8].mean()) * self.exposure
        step = 1.0 - math.exp(-1.0 / (self.fps * _AE_TIME))
        target = min(_AE_MAX_GAIN, max(0.5, self.exposure * _AE_TARGET / max(mean, 1e-4)))
        self.exposure += step * (target - self.exposure)  # auto-exposure lags the scene
        signal = radiance * self.exposure
        sigma = self.spec.noise * (0.6 + 0.4 * math.sqrt(self.exposure))
        noise = self.noise_bank[index % len(self.noise_bank)]
        noise = np.roll(noise, (int(self.rng.integers(self.h)), int(self.rng.integers(self.w))), (0, 1))
        signal += sigma * noise[..., None]
        out = np.clip(signal, 0, 1) ** 0.85 * 255.0 + 0.5
        return out.astype(np.uint8)


def render(spec: SceneSpec, width: int, height: int, fps: float, seed: int = 0,
           lead_in: float = 0.0) -> Iterator[tuple[np.ndarray, bool]]:
    """Every frame of a scene with whether something moves in it.

    `lead_in` seconds of the scene's opening state (wind, noise and light as at its start, no
    actors) come first, so detectors can settle before anything happens.
    """
    r = _Renderer(spec, width, height, fps, seed)
    for i in range(round((spec.duration + lead_in) * fps)):
        t = i / fps - lead_in
        yield r.frame(i, t), r.moving(t)


def intervals_from_flags(flags: Sequence[bool], fps: float, merge_gap: float = MERGE_GAP) -> tuple[Interval, ...]:
    """Per-frame flags -> (start, end) intervals, merged exactly as detections are (`motion_intervals`)."""
    found = motion_intervals(((i / fps, flag) for i, flag in enumerate(flags)), 1.0 / fps, merge_gap)
    return tuple((round(a, 3), round(b, 3)) for a, b in found)


class _Encoder:
    """Writes BGR frames to H.264 through ffmpeg (one thread), or OpenCV's mp4v writer without ffmpeg."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: cv2.VideoWriter | None = None
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg:
            cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s",
                   f"{width}x{height}", "-r", f"{fps:g}", "-i", "-", "-c:v", "libx264", "-preset", "veryfast",
                   "-crf", str(crf), "-g", str(int(2 * fps)), "-pix_fmt", "yuv420p", "-threads", "1",
                   "-movflags", "+faststart", str(path)]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        else:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
            self._writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))

    def write(self, frame: np.ndarray) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.write(frame.tobytes())
        elif self._writer is not None:
            self._writer.write(frame)

    def close(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
            if self._proc.wait() != 0:
                raise RuntimeError(f"ffmpeg failed to encode the clip (exit {self._proc.returncode})")
        if self._writer is not None:
            self._writer.release()


def write_clip(path: str | Path, scene: str = "sample", *, width: int = 640, height: int = 360, fps: float = 10.0,
               seed: int = 0, crf: int = 23, duration: float | None = None, lead_in: float = 0.0) -> GroundTruth:
    """Render `scene` (a key of `SCENES`) to an MP4 at `path` and its ground truth to `path` with `.json`.

    `duration` shortens (or lengthens) the scene; `lead_in` prepends that many seconds of the quiet
    opening scene (ground truth `scored_from`); times in the ground truth are clip times.
    Returns the ground truth.
    """
    spec = scene_spec(scene)
    if duration is not None:
        spec = SceneSpec(**{**spec.__dict__, "duration": duration})
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    encoder = _Encoder(out, width, height, fps, crf)
    flags = []
    try:
        for image, moving in render(spec, width, height, fps, seed, lead_in):
            encoder.write(image)
            flags.append(moving)
    finally:
        encoder.close()
    events = tuple((round(t + lead_in, 3), kind) for t, kind in spec.events if t < spec.duration)
    truth = GroundTruth(spec.name, spec.description, len(flags) / fps, fps, width, height,
                        intervals_from_flags(flags, fps), events, lead_in)
    ground_truth_path(out).write_text(truth.to_json())
    return truth


def ensure_clip(root: Path, scene: str, width: int, height: int, seed: int, lead_in: float, tag: str) -> Path:
    """The clip of `scene` under `root` (one folder per size, seed and lead-in), rendered on first use."""
    path = root / f"{width}x{height}-seed{seed}-lead{lead_in:g}" / f"{scene}.mp4"
    if path.exists() and path.with_suffix(".json").exists():
        return path
    print(f"{tag}: rendering a {width}x{height} clip ({scene_spec(scene).duration + lead_in:g} s)...",
          file=sys.stderr, flush=True)
    write_clip(path, scene, width=width, height=height, seed=seed, lead_in=lead_in)
    return path


def write_sample_clip(path: str | Path, width: int = 640, height: int = 360) -> GroundTruth:
    """The bundled sample: 30 s, a person walks by, the lamp switches on, a car drives past."""
    return write_clip(path, "sample", width=width, height=height)
