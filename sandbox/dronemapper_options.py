"""DroneMapper stand-in: the ODM options a processing node accepts, and their checks."""
from __future__ import annotations

import json
from typing import Any

from sandbox.dronemapper_api import _as_bool

ODM_STAGES = ("dataset", "split", "merge", "opensfm", "openmvs", "odm_filterpoints", "odm_meshing",
              "mvs_texturing", "odm_georeferencing", "odm_dem", "odm_orthophoto", "odm_report", "odm_postprocess")
QUALITY = ("ultra", "high", "medium", "low", "lowest")

# ODM options a node accepts: name -> (type, default, domain).
ODM_OPTIONS: dict[str, tuple[str, Any, Any]] = {
    "3d-tiles": ("bool", False, None), "auto-boundary": ("bool", False, None),
    "build-overviews": ("bool", False, None), "camera-lens": ("enum", "auto", (
        "auto", "perspective", "brown", "fisheye", "fisheye_opencv", "spherical", "equirectangular", "dual")),
    "cog": ("bool", False, None), "crop": ("float", 3.0, None), "dem-decimation": ("int", 1, None),
    "dem-euclidean-map": ("bool", False, None), "dem-gapfill-steps": ("int", 3, None),
    "dem-resolution": ("float", 5.0, None), "dsm": ("bool", False, None), "dtm": ("bool", False, None),
    "end-with": ("enum", "odm_postprocess", ODM_STAGES), "fast-orthophoto": ("bool", False, None),
    "feature-quality": ("enum", "high", QUALITY),
    "feature-type": ("enum", "dspsift", ("akaze", "dspsift", "hahog", "orb", "sift")),
    "force-gps": ("bool", False, None), "gps-accuracy": ("float", 3.0, None), "ignore-gsd": ("bool", False, None),
    "matcher-neighbors": ("int", 0, None), "matcher-type": ("enum", "flann", ("bow", "bruteforce", "flann")),
    "max-concurrency": ("int", 4, None), "mesh-octree-depth": ("int", 11, None), "mesh-size": ("int", 200000, None),
    "min-num-features": ("int", 10000, None), "optimize-disk-space": ("bool", False, None),
    "orthophoto-compression": ("enum", "DEFLATE", ("JPEG", "LZW", "PACKBITS", "DEFLATE", "LZMA", "NONE")),
    "orthophoto-cutline": ("bool", False, None), "orthophoto-kmz": ("bool", False, None),
    "orthophoto-png": ("bool", False, None), "orthophoto-resolution": ("float", 5.0, None),
    "pc-classify": ("bool", False, None), "pc-csv": ("bool", False, None), "pc-ept": ("bool", False, None),
    "pc-filter": ("float", 5.0, None), "pc-las": ("bool", False, None), "pc-quality": ("enum", "medium", QUALITY),
    "pc-rectify": ("bool", False, None), "pc-sample": ("float", 0.0, None), "pc-skip-geometric": ("bool", False, None),
    "primary-band": ("string", "auto", None),
    "radiometric-calibration": ("enum", "none", ("none", "camera", "camera+sun")),
    "rerun-from": ("enum", "", ODM_STAGES), "resize-to": ("int", 2048, None),
    "sfm-algorithm": ("enum", "incremental", ("incremental", "triangulation", "planar")),
    "skip-3dmodel": ("bool", False, None), "skip-band-alignment": ("bool", False, None),
    "skip-orthophoto": ("bool", False, None), "skip-report": ("bool", False, None),
    "smrf-scalar": ("float", 1.25, None), "smrf-slope": ("float", 0.15, None),
    "smrf-threshold": ("float", 0.5, None), "smrf-window": ("float", 18.0, None),
    "split": ("int", 999999, None), "split-overlap": ("float", 150.0, None),
    "texturing-keep-unseen-faces": ("bool", False, None), "texturing-skip-global-seam-leveling": ("bool", False, None),
    "tiles": ("bool", False, None), "use-3dmesh": ("bool", False, None), "use-exif": ("bool", False, None),
    "use-fixed-camera-params": ("bool", False, None), "use-hybrid-bundle-adjustment": ("bool", False, None),
}


def _validate_options(raw: Any, from_form: bool, checks: str = "document") -> list[dict]:
    """[{name, value}, ...] as the document's "Create a task" defines options: a JSON-encoded list
    of name/value pairs, nothing more. Stricter `checks`, for tests of a stricter server:
    "webodm" adds WebODM's refusal of a falsy value ("Invalid options"); "odm" adds NodeODM's
    name and value checks, brought forward so the error names the option."""
    if checks not in ("document", "webodm", "odm"):
        raise ValueError(f"option_checks must be document, webodm or odm, not {checks!r}")
    if isinstance(raw, str):
        if not from_form:
            raise ValueError("Invalid options")  # in a JSON body the list itself, not a string of it
        try:
            raw = json.loads(raw or "[]")
        except ValueError:
            raise ValueError("Value must be valid JSON.") from None
    if not isinstance(raw, list) or not all(isinstance(o, dict) and "name" in o and "value" in o for o in raw):
        raise ValueError("Invalid options")
    if checks != "document" and not all(o["name"] and o["value"] for o in raw):
        raise ValueError("Invalid options")
    if checks == "odm":
        for option in raw:
            name, value = option["name"], option["value"]
            if name not in ODM_OPTIONS:
                raise ValueError(f"Unknown option: {name}")
            kind, _default, domain = ODM_OPTIONS[name]
            if not _valid_value(kind, domain, value):
                expected = f"one of {', '.join(domain)}" if kind == "enum" else f"a {kind}"
                raise ValueError(f"Invalid value for option {name}: {value!r} (expected {expected})")
    return [{"name": o["name"], "value": o["value"]} for o in raw]


def _valid_value(kind: str, domain: Any, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool) or (isinstance(value, str) and _as_bool(value) is not None)
    if kind in ("int", "float"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return kind == "float" or number == int(number)
    if kind == "enum":
        return value in domain
    return isinstance(value, str)


def _option_descriptions() -> list[dict]:
    return [{"name": name, "type": kind, "value": default if kind != "enum" else str(default),
             "domain": list(domain) if domain else "", "help": f"ODM option {name}"}
            for name, (kind, default, domain) in sorted(ODM_OPTIONS.items())]
