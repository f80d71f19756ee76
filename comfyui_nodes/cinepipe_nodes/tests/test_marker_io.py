"""Unit tests of the marker I/O (standard library only).

Run: `python -m unittest discover -s comfyui_nodes/cinepipe_nodes/tests -t comfyui_nodes`
(cinepipe's integration test `comfy_marker::python_unit_tests` runs them with ComfyUI's Python).
"""

import datetime
import json
import os
import tempfile
import unittest
from unittest import mock

from cinepipe_nodes import marker_io


class CheckPrefix(unittest.TestCase):
    def test_accepts_relative_prefixes(self):
        for p in ["frame", "cinepipe/run/scene-1/a1/frame", "a\\b"]:
            self.assertTrue(marker_io.check_prefix(p))
        self.assertEqual(marker_io.check_prefix("a\\b"), "a/b")

    def test_refuses_escapes_and_absolutes(self):
        for p in ["", "  ", "../x", "a/../../x", "a/..", "/etc/x", "C:/x", "c:\\x", "\\\\srv\\x", "a/", "a/.", "a\x00b"]:
            with self.assertRaises(marker_io.PrefixError, msg=p):
                marker_io.check_prefix(p)

    def test_names_frames_like_saveimage(self):
        self.assertEqual(marker_io.frame_name("frame", 1), "frame_00001_.png")
        self.assertEqual(marker_io.frame_name("f", 123456), "f_123456_.png")


class WriteMarker(unittest.TestCase):
    def test_writes_the_contract_and_leaves_no_temp_file(self):
        with tempfile.TemporaryDirectory() as d:
            now = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
            path = marker_io.write_marker(d, "frame", ["frame_00001_.png", "frame_00002_.png"], now=now)
            self.assertEqual(path, os.path.join(d, "frame.done"))
            with open(path) as f:
                body = json.load(f)
            self.assertEqual(body["Timestamp"], "2025-01-02T03:04:05Z")
            self.assertEqual(body["FrameCount"], 2)
            self.assertEqual(body["Files"], ["frame_00001_.png", "frame_00002_.png"])
            self.assertEqual(os.listdir(d), ["frame.done"])

    def test_marker_is_fsynced_before_the_rename_and_the_folder_after(self):
        calls = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            calls.append(("fsync", os.path.isdir(os.readlink(f"/proc/self/fd/{fd}"))))
            real_fsync(fd)

        def replace(a, b):
            calls.append(("replace", os.path.basename(a), os.path.basename(b)))
            real_replace(a, b)

        with tempfile.TemporaryDirectory() as d, mock.patch("os.fsync", fsync), mock.patch("os.replace", replace):
            marker_io.write_marker(d, "frame", [])
        self.assertEqual(
            calls,
            [("fsync", False), ("replace", "frame.done.tmp", "frame.done"), ("fsync", True)],
        )

    def test_a_failed_write_leaves_neither_marker_nor_temp(self):
        with tempfile.TemporaryDirectory() as d:
            with mock.patch("os.replace", side_effect=OSError("disk full")):
                with self.assertRaises(OSError):
                    marker_io.write_marker(d, "frame", ["x"])
            self.assertEqual(os.listdir(d), [])

    def test_replaces_an_old_marker_whole(self):
        with tempfile.TemporaryDirectory() as d:
            marker_io.write_marker(d, "frame", ["a"] * 5)
            marker_io.write_marker(d, "frame", ["b"])
            with open(os.path.join(d, "frame.done")) as f:
                self.assertEqual(json.load(f)["FrameCount"], 1)


class WriteFileAtomic(unittest.TestCase):
    def test_temp_name_is_hidden_and_removed_on_error(self):
        with tempfile.TemporaryDirectory() as d:
            seen = []

            def boom(f):
                seen.append(os.listdir(d))
                raise RuntimeError("encoder failed")

            with self.assertRaises(RuntimeError):
                marker_io.write_file_atomic(os.path.join(d, "frame_00001_.png"), boom)
            self.assertEqual(seen, [[".frame_00001_.png.tmp"]])
            self.assertEqual(os.listdir(d), [])


if __name__ == "__main__":
    unittest.main()
