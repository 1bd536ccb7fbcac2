"""Faces: the DCGAN generator run with onnxruntime (generator.py) and the images it writes (images.py)."""
from genrt.faces.generator import (
    DEFAULT_BATCH_SIZE, INTERPOLATION_MODES, FaceGenerator, check_truncation, interpolate_latents,
)
from genrt.faces.images import OWN_FILE, image_names, make_grid, own_files, save_grid, save_images, save_png

__all__ = ["DEFAULT_BATCH_SIZE", "INTERPOLATION_MODES", "OWN_FILE", "FaceGenerator", "check_truncation",
           "image_names", "interpolate_latents", "make_grid", "own_files", "save_grid", "save_images", "save_png"]
