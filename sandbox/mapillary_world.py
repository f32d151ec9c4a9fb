"""A deterministic synthetic Mapillary world: organizations, creators, streets, sequences, images.

Everything derives from a seed, so a test can rebuild the same world and compare what the client
harvested with the ground truth (`organization_images_in_bbox`). Distances are laid out in local
metres around a centre point and converted to lon/lat with an equirectangular approximation,
which is exact enough over a few kilometres.
"""
from __future__ import annotations

import functools
import math
import random
import string
from dataclasses import dataclass, field

import numpy as np

EARTH_M_PER_DEG = 111_320.0
DEFAULT_CENTER = (33.3650, 35.1700)  # lon, lat: Nicosia (the toolset README's default AOI is Cyprus)
DEFAULT_REGION_KM = 3.0
DEFAULT_SEED = 42

ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    slug: str
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Creator:
    id: str
    username: str


@dataclass(frozen=True, slots=True)
class Camera:
    make: str
    model: str
    camera_type: str            # perspective | fisheye | spherical
    width: int
    height: int
    parameters: tuple[float, ...]
    speed_mps: tuple[float, float]

    @property
    def is_pano(self) -> bool:
        return self.camera_type == "spherical"


CAMERAS = {
    "pano_car": Camera("GoPro", "GoPro Max", "spherical", 5760, 2880, (), (8.0, 12.0)),
    "phone_car": Camera("Apple", "iPhone 12", "perspective", 4032, 3024, (0.82, -0.05, 0.01), (7.0, 11.0)),
    "dashcam": Camera("BlackVue", "DR900S-1CH", "perspective", 1920, 1080, (0.61, -0.12, 0.03), (8.0, 14.0)),
    "action_walk": Camera("GoPro", "HERO9 Black", "fisheye", 4000, 3000, (0.48, 0.02, -0.01), (1.2, 1.6)),
    "phone_walk": Camera("samsung", "SM-G991B", "perspective", 4000, 3000, (0.79, -0.04, 0.0), (1.1, 1.5)),
}

# (slug, name, sequences at scale 1, creators: (username, camera key))
ORGANIZATION_PLAN = (
    ("sandbox-city", "Sandbox City Survey", 120,
     (("city_van_1", "pano_car"), ("city_van_2", "pano_car"), ("city_surveyor", "phone_car"))),
    ("sandbox-fleet", "Sandbox Fleet Co", 40, (("fleet_truck_7", "dashcam"), ("fleet_truck_9", "dashcam"))),
    ("sandbox-walkers", "Sandbox Walkers Club", 20, (("walker_anna", "action_walk"),)),
)
# Sequences nobody's organization owns (organization_id absent in tiles).
INDEPENDENT_PLAN = (40, (("solo_mapper", "phone_walk"), ("weekend_driver", "phone_car")))
# With `long_sequence` images (0: none), one more organization owning one sequence that long (a bus
# going up and down its street), made after everything else so that the rest of the world is unchanged.
LONG_SEQUENCE_PLAN = ("sandbox-longhaul", "Sandbox Long Haul", ("longhaul_bus", "dashcam"))
# Sequences added later, (organization slug, how many, capture time in epoch ms), made last in that
# order: adding one leaves the world, and the additions before it, as they were.
Additions = tuple[tuple[str, int, int], ...]


@dataclass(slots=True, eq=False)   # compared and hashed by identity: one object per image
class Image:
    id: str
    sequence_id: str
    organization_id: str | None
    creator: Creator
    camera: Camera
    captured_at: int                      # epoch ms
    lon: float                            # raw GPS position ("geometry")
    lat: float
    computed_lon: float                   # SfM-corrected position ("computed_geometry")
    computed_lat: float
    altitude: float
    computed_altitude: float
    compass_angle: float
    computed_compass_angle: float | None  # missing for some images, as on the real API
    computed_rotation: tuple[float, float, float]
    quality_score: float
    atomic_scale: float
    merge_cc: int
    mesh_id: str
    sfm_cluster_id: str

    @property
    def is_pano(self) -> bool:
        return self.camera.is_pano


@dataclass(slots=True, eq=False)
class Sequence:
    id: str
    organization_id: str | None
    creator: Creator
    camera: Camera
    image_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Street:
    xy: np.ndarray                        # (n, 2) local metres
    cumulative: np.ndarray                # distance along the street at each vertex

    @property
    def length(self) -> float:
        return float(self.cumulative[-1])

    def at(self, distance: float) -> tuple[float, float, float]:
        """Position (x, y) and bearing (degrees clockwise from north) at a distance along the street."""
        i = int(np.clip(np.searchsorted(self.cumulative, distance) - 1, 0, len(self.xy) - 2))
        (x0, y0), (x1, y1) = self.xy[i], self.xy[i + 1]
        span = self.cumulative[i + 1] - self.cumulative[i]
        t = 0.0 if span == 0 else (distance - self.cumulative[i]) / span
        bearing = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
        return float(x0 + t * (x1 - x0)), float(y0 + t * (y1 - y0)), float(bearing)


def _street(points: np.ndarray) -> Street:
    steps = np.hypot(*np.diff(points, axis=0).T)
    return Street(points, np.concatenate([[0.0], np.cumsum(steps)]))


def lonlat_to_mercator_unit(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Web Mercator as fractions of the world (0..1, y growing southwards), the tile grid at z0."""
    x = (np.asarray(lon) + 180.0) / 360.0
    sin = np.sin(np.radians(lat))
    y = 0.5 - np.log((1 + sin) / (1 - sin)) / (4 * math.pi)
    return x, y


def rotation_looking_at(bearing_deg: float) -> tuple[float, float, float]:
    """Angle-axis of a level camera looking along a bearing (world ENU -> camera x right, y down, z forward)."""
    h = math.radians(bearing_deg)
    c, s = math.cos(h), math.sin(h)
    rotation = np.array([[c, -s, 0.0], [0.0, 0.0, -1.0], [s, c, 0.0]])  # rows: right, down, forward
    angle = math.acos(max(-1.0, min(1.0, (c - 1) / 2)))                 # the trace is c
    if math.sin(angle) > 1e-6:
        axis = np.array([c + 1.0, -s, s]) / (2 * math.sin(angle))
    else:  # a half turn: the axis is the dominant column of (R + I) / 2
        half = (rotation + np.eye(3)) / 2
        column = half[:, int(np.argmax(np.linalg.norm(half, axis=0)))]
        axis = column / np.linalg.norm(column)
    return tuple(round(float(v) * angle, 6) for v in axis)


class World:
    """The generated world, read-only once built."""

    def __init__(self, *, seed: int = DEFAULT_SEED, scale: float = 1.0,
                 center: tuple[float, float] = DEFAULT_CENTER, region_km: float = DEFAULT_REGION_KM,
                 long_sequence: int = 0, added: Additions = ()) -> None:
        self.seed, self.scale, self.center, self.region_km = seed, scale, tuple(center), region_km
        self.long_sequence, self.added = long_sequence, added
        self.rng = random.Random(seed)
        self._used_ids: set[str] = set()
        self.organizations: dict[str, Organization] = {}
        self.creators: dict[str, Creator] = {}
        self.sequences: dict[str, Sequence] = {}
        self.images: dict[str, Image] = {}
        self.streets = self._lay_out_streets()
        self._populate()
        self._index()

    # --- ids ---
    def _numeric_id(self, digits: int) -> str:
        while True:
            value = str(self.rng.randrange(10 ** (digits - 1), 10 ** digits))
            if value not in self._used_ids:
                self._used_ids.add(value)
                return value

    def _sequence_id(self) -> str:
        while True:
            value = "".join(self.rng.choice(ID_ALPHABET) for _ in range(22))
            if value not in self._used_ids:
                self._used_ids.add(value)
                return value

    # --- geography ---
    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        lon0, lat0 = self.center
        return lon0 + x / (EARTH_M_PER_DEG * math.cos(math.radians(lat0))), lat0 + y / EARTH_M_PER_DEG

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The region as (min_lon, min_lat, max_lon, max_lat)."""
        half = self.region_km * 500.0
        (w, s), (e, n) = self.to_lonlat(-half, -half), self.to_lonlat(half, half)
        return (w, s, e, n)

    def _lay_out_streets(self) -> list[Street]:
        """A wobbly grid of east-west and north-south streets plus two diagonal avenues."""
        rng, half = self.rng, self.region_km * 500.0
        along = np.arange(-half, half + 1e-6, 25.0)
        streets = []
        for horizontal in (True, False):
            offset = -half + rng.uniform(60, 140)
            while offset < half - 60:
                amplitude, wavelength, phase = rng.uniform(0, 25), rng.uniform(600, 1600), rng.uniform(0, 2 * math.pi)
                wobble = offset + amplitude * np.sin(2 * math.pi * along / wavelength + phase)
                pts = np.column_stack([along, wobble] if horizontal else [wobble, along])
                streets.append(_street(pts))
                offset += rng.uniform(170, 260)
        diagonal = np.linspace(-half * 0.95, half * 0.95, 120)
        streets.append(_street(np.column_stack([diagonal, diagonal * 0.9])))
        streets.append(_street(np.column_stack([diagonal, -diagonal * 0.8 + 40])))
        return streets

    def _terrain(self, x: float, y: float) -> float:
        return 150.0 + 0.012 * x + 9.0 * math.sin(y / 420.0)

    # --- people and imagery ---
    def _populate(self) -> None:
        for slug, name, count, crew in ORGANIZATION_PLAN:
            org = Organization(self._numeric_id(15), slug, name, f"{name}: synthetic street-level imagery")
            self.organizations[org.id] = org
            self._add_sequences(org.id, crew, count)
        count, crew = INDEPENDENT_PLAN
        self._add_sequences(None, crew, count)
        if self.long_sequence:
            slug, name, (username, camera_key) = LONG_SEQUENCE_PLAN
            org = Organization(self._numeric_id(15), slug, name, f"{name}: synthetic street-level imagery")
            self.organizations[org.id] = org
            creator = Creator(self._numeric_id(15), username)
            self.creators[creator.id] = creator
            self._add_sequence(org.id, creator, CAMERAS[camera_key], images=self.long_sequence)
        for slug, count, captured_at in self.added:
            org = self.organization_by_slug(slug)
            first = next(s for s in self.sequences.values() if s.organization_id == org.id)
            for _ in range(count):
                self._add_sequence(org.id, first.creator, first.camera, captured_at=captured_at)

    def _add_sequences(self, organization_id: str | None, crew, count: int) -> None:
        creators = []
        for username, camera_key in crew:
            creator = Creator(self._numeric_id(15), username)
            self.creators[creator.id] = creator
            creators.append((creator, CAMERAS[camera_key]))
        for i in range(max(1, round(count * self.scale))):
            creator, camera = creators[i % len(creators)]
            self._add_sequence(organization_id, creator, camera)

    def _add_sequence(self, organization_id: str | None, creator: Creator, camera: Camera,
                      images: int | None = None, captured_at: int | None = None) -> None:
        """A sequence along a stretch of street, or with `images`, that many going up and down it;
        its first image captured at `captured_at` (epoch ms) when given."""
        rng = self.rng
        street = rng.choice(self.streets)
        length = min(rng.uniform(200, 900), street.length - 1)
        start = rng.uniform(0, street.length - length)
        forward = rng.random() < 0.5
        base_step, speed = rng.uniform(5.5, 9.5), rng.uniform(*camera.speed_mps)
        drawn = rng.randrange(1_546_300_800_000, 1_751_241_600_000)  # 2019-01-01 .. 2025-06-30
        captured_at = drawn if captured_at is None else captured_at
        sequence = Sequence(self._sequence_id(), organization_id, creator, camera)
        merge_cc = rng.randrange(10 ** 8, 10 ** 9)
        travelled = 0.0
        while len(sequence.image_ids) < images if images else travelled <= length:
            along = travelled % (2 * length)      # back along the stretch past its end
            ahead = forward == (along <= length)
            along = along if along <= length else 2 * length - along
            distance = start + along if forward else start + length - along
            x, y, bearing = street.at(distance)
            heading = bearing if ahead else (bearing + 180.0) % 360.0
            gps_x, gps_y = x + rng.gauss(0, 2.5), y + rng.gauss(0, 2.5)
            sfm_x, sfm_y = x + rng.gauss(0, 0.4), y + rng.gauss(0, 0.4)
            lon, lat = self.to_lonlat(gps_x, gps_y)
            computed_lon, computed_lat = self.to_lonlat(sfm_x, sfm_y)
            ground = self._terrain(x, y) + 2.0
            computed_heading = (heading + rng.gauss(0, 0.8)) % 360.0
            image = Image(
                id=self._numeric_id(rng.choice((15, 16))),
                sequence_id=sequence.id, organization_id=organization_id, creator=creator, camera=camera,
                captured_at=captured_at,
                lon=round(lon, 8), lat=round(lat, 8),
                computed_lon=round(computed_lon, 8), computed_lat=round(computed_lat, 8),
                altitude=round(ground + rng.gauss(0, 3.0), 3), computed_altitude=round(ground + rng.gauss(0, 0.3), 3),
                compass_angle=round((heading + rng.gauss(0, 4.0)) % 360.0, 5),
                # The real API omits computed_compass_angle for some images.
                computed_compass_angle=None if rng.random() < 0.08 else round(computed_heading, 5),
                computed_rotation=rotation_looking_at(computed_heading),
                quality_score=round(rng.uniform(0.3, 1.0), 3),
                atomic_scale=round(1.0 + rng.gauss(0, 0.02), 5),
                merge_cc=merge_cc,
                mesh_id=self._numeric_id(15), sfm_cluster_id=self._numeric_id(15),
            )
            self.images[image.id] = image
            sequence.image_ids.append(image.id)
            step = base_step * rng.uniform(0.9, 1.1)
            travelled += step
            captured_at += int(1000 * step / speed)
        self.sequences[sequence.id] = sequence

    def _index(self) -> None:
        """Arrays for fast spatial selection (tiles, bbox queries)."""
        self.image_order = list(self.images)
        imgs = [self.images[i] for i in self.image_order]
        self.lon = np.array([i.lon for i in imgs])
        self.lat = np.array([i.lat for i in imgs])
        self.merc = lonlat_to_mercator_unit(self.lon, self.lat)
        self.computed_merc = lonlat_to_mercator_unit(np.array([i.computed_lon for i in imgs]),
                                                     np.array([i.computed_lat for i in imgs]))
        self.position = {image_id: n for n, image_id in enumerate(self.image_order)}
        self.sequence_positions = {s.id: np.array([self.position[i] for i in s.image_ids])
                                   for s in self.sequences.values()}

    # --- queries (ground truth) ---
    def images_in_bbox(self, bbox: tuple[float, float, float, float],
                       organization_id: str | None = None) -> list[Image]:
        """Images whose `geometry` lies in bbox (min_lon, min_lat, max_lon, max_lat), optionally of one organization."""
        w, s, e, n = bbox
        mask = (self.lon >= w) & (self.lon <= e) & (self.lat >= s) & (self.lat <= n)
        found = [self.images[self.image_order[k]] for k in np.flatnonzero(mask)]
        if organization_id is not None:
            found = [i for i in found if i.organization_id == str(organization_id)]
        return found

    def organization_by_slug(self, slug: str) -> Organization:
        return next(o for o in self.organizations.values() if o.slug == slug)

    def largest_organization(self) -> Organization:
        sizes = dict.fromkeys(self.organizations, 0)
        for sequence in self.sequences.values():
            if sequence.organization_id:
                sizes[sequence.organization_id] += len(sequence.image_ids)
        return self.organizations[max(sizes, key=sizes.get)]

    def summary(self) -> dict:
        orgs = {}
        for org in self.organizations.values():
            seqs = [s for s in self.sequences.values() if s.organization_id == org.id]
            orgs[org.id] = {"slug": org.slug, "name": org.name, "sequences": len(seqs),
                            "images": sum(len(s.image_ids) for s in seqs)}
        return {"seed": self.seed, "scale": self.scale, "bbox": list(self.bbox), "organizations": orgs,
                "sequences": len(self.sequences), "images": len(self.images)}


@functools.lru_cache(maxsize=4)
def build_world(seed: int = DEFAULT_SEED, scale: float = 1.0, center: tuple[float, float] = DEFAULT_CENTER,
                region_km: float = DEFAULT_REGION_KM, long_sequence: int = 0, added: Additions = ()) -> World:
    """The world for these parameters; built once per parameter set and shared (it is read-only)."""
    return World(seed=seed, scale=scale, center=tuple(center), region_km=region_km, long_sequence=long_sequence,
                 added=tuple(added))


def organization_images_in_bbox(organization_id: str, bbox: tuple[float, float, float, float], *,
                                seed: int = DEFAULT_SEED, scale: float = 1.0,
                                center: tuple[float, float] = DEFAULT_CENTER,
                                region_km: float = DEFAULT_REGION_KM) -> list[Image]:
    """Ground truth: the images of an organization whose geometry lies in bbox, in the world a
    stand-in with the same options serves."""
    return build_world(seed, scale, tuple(center), region_km).images_in_bbox(bbox, organization_id)
