"""Immersity AI jobs: disparity maps and animations, written to S3 through presigned PUT URLs.
Option names, types and ranges as the vendor's OpenAPI (v3.1.1) gives them."""
from __future__ import annotations

from geoqueue.params import Choice, JobSpec, Number, Options, Param, S3Object, S3Prefix, Text, Whole

MAX_PARALLEL = 100

DISPARITY_OPTIONS = Options({
    "dilation": Number(-0.01, 0.01),
    "inputType": Choice(("image2d", "image360")),
    "outputBitDepth": Choice(("uint8", "uint16")),
}, what="disparity option")

ANIMATION_OPTIONS = Options({
    "animationType": Choice(("mp4", "gif")),
    "animationLength": Number(1, 10),
    "pattern": Text(max_length=10_000, describe="a string of x,y,z triplets per frame"),
    "outputWidth": Whole(1, 16384),
    "outputHeight": Whole(1, 16384),
    "amplitudeX": Number(0, 10), "amplitudeY": Number(0, 10), "amplitudeZ": Number(0, 10),
    "phaseX": Number(0, 7), "phaseY": Number(0, 7), "phaseZ": Number(0, 7),
    "gain": Number(0, 10),
    "convergence": Number(-1, 1),
    "numberOfLoops": Whole(0, 10),
    "outputFps": Choice((1, 5, 10, 15, 24, 25, 30, 60)),
}, what="animation option")

JOBS = (
    JobSpec("immersity.disparity", "A disparity map for one image (and its animation when `animation` is given).", {
        "image": Param(S3Object(), "the image, JPEG or PNG", required=True),
        "output": Param(S3Object(output=True),
                        "where the PNG disparity map goes (default: in the app's part of the output area)"),
        "options": Param(DISPARITY_OPTIONS, "disparity options"),
        "animation": Param(ANIMATION_OPTIONS, "animation options: also makes an animation from the map"),
        "animation_output": Param(S3Object(output=True), "where the animation goes"),
    }),
    JobSpec("immersity.batch",
            "Disparity maps (and animations) for every image under a prefix, a bounded number at a time.", {
        "prefix": Param(S3Prefix(), "the images", required=True),
        "output_prefix": Param(S3Prefix(output=True),
                               "where the outputs go (default: in the app's part of the output area)"),
        "options": Param(DISPARITY_OPTIONS, "disparity options"),
        "animation": Param(ANIMATION_OPTIONS, "animation options: also makes an animation per image"),
        "max_parallel": Param(Whole(1, MAX_PARALLEL),
                              "images in flight at once (default GEOQUEUE_IMMERSITY_MAX_PARALLEL)"),
    }),
    JobSpec("immersity.animation", "An animation from an image and its disparity map.", {
        "image": Param(S3Object(), "the image", required=True),
        "disparity": Param(S3Object(), "its disparity map", required=True),
        "output": Param(S3Object(output=True), "where the animation goes"),
        "options": Param(ANIMATION_OPTIONS, "animation options"),
    }),
)
