"""Tests of the WriteDoneMarker node class itself, imported into ComfyUI's Python.

Needs ComfyUI's modules (`folder_paths`, torch): the runner puts `COMFYUI_DIR` on `sys.path`.
Skipped when they are absent, so the stdlib tests still run anywhere.
"""

import json
import os
import tempfile
import unittest

try:
    import folder_paths  # noqa: F401
    import torch
except ImportError:  # pragma: no cover
    torch = None

from cinepipe_nodes import marker_io


@unittest.skipIf(torch is None, "ComfyUI's modules are not importable (set COMFYUI_DIR on sys.path)")
class NodeInComfyUIPython(unittest.TestCase):
    def setUp(self):
        from cinepipe_nodes import nodes

        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.realpath(self.tmp.name)
        self.node = nodes.WriteDoneMarker()
        self.node.output_dir = self.out

    def tearDown(self):
        self.tmp.cleanup()

    def test_frames_then_marker(self):
        images = torch.rand(3, 8, 8, 3)
        ui = self.node.save_and_mark(images, "run/scene-1/a1/frame")["ui"]
        folder = os.path.join(self.out, "run", "scene-1", "a1")
        names = sorted(os.listdir(folder))
        self.assertEqual(names, ["frame.done", "frame_00001_.png", "frame_00002_.png", "frame_00003_.png"])
        with open(os.path.join(folder, "frame.done")) as f:
            body = json.load(f)
        self.assertEqual(body["FrameCount"], 3)
        # The marker is younger than every frame it counts.
        mtime = os.stat(os.path.join(folder, "frame.done")).st_mtime_ns
        for n in names[1:]:
            self.assertLessEqual(os.stat(os.path.join(folder, n)).st_mtime_ns, mtime)
        self.assertEqual(ui["images"][0], {"filename": "frame_00001_.png", "subfolder": "run/scene-1/a1", "type": "output"})
        self.assertEqual(ui["done_marker"][0]["frame_count"], 3)

    def test_counter_continues_like_saveimage(self):
        self.node.save_and_mark(torch.rand(2, 4, 4, 3), "p/f")
        self.node.save_and_mark(torch.rand(1, 4, 4, 3), "p/f")
        self.assertIn("f_00003_.png", os.listdir(os.path.join(self.out, "p")))

    def test_refuses_escaping_prefixes(self):
        from cinepipe_nodes import nodes

        self.assertIsInstance(nodes.WriteDoneMarker.VALIDATE_INPUTS("../x"), str)
        self.assertIs(nodes.WriteDoneMarker.VALIDATE_INPUTS("a/b"), True)
        with self.assertRaises(marker_io.PrefixError):
            self.node.save_and_mark(torch.rand(1, 4, 4, 3), "../escape")
        self.assertEqual(os.listdir(self.out), [])

    def test_refuses_a_symlinked_folder_out_of_the_output(self):
        with tempfile.TemporaryDirectory() as elsewhere:
            os.symlink(elsewhere, os.path.join(self.out, "link"))
            with self.assertRaises(Exception):
                self.node.save_and_mark(torch.rand(1, 4, 4, 3), "link/f")
            self.assertEqual(os.listdir(elsewhere), [])


if __name__ == "__main__":
    unittest.main()
