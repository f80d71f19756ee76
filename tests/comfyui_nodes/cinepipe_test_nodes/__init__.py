"""Test-only ComfyUI nodes for cinepipe's integration tests (loaded by tests/harness.rs).

- CinepipeTestRaise: always raises RuntimeError(message) -> a runtime `execution_error`.
- CinepipeTestNothing: an output node that returns no UI outputs: the prompt succeeds and its
  `/history` entry never lists outputs (the `postExecution` end).
- CinepipeTestFailOnce: raises the first time it runs with a given `key` (a file under the
  system temp dir remembers it), then passes images through: a workflow that fails on its first
  attempt and passes on the retry.
- CinepipeTestSleep: passes images through after sleeping `seconds`, checking for
  /interrupt every 50 ms so that an interrupt stops it promptly.

Never installed by `cinepipe install-node`; the names are prefixed so they cannot clash with
the project's own nodes in comfyui_nodes/.
"""

import hashlib
import os
import tempfile
import time

import comfy.model_management


class CinepipeTestRaise:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "message": ("STRING", {"default": "deliberate failure"})}}

    RETURN_TYPES = ()
    FUNCTION = "boom"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def boom(self, images, message):
        raise RuntimeError(message)


class CinepipeTestFailOnce:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "key": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "fail_once"
    CATEGORY = "testing"

    @classmethod
    def IS_CHANGED(cls, images, key):
        # Never served from the cache: the second attempt must run the node again.
        return float("nan")

    def fail_once(self, images, key):
        folder = os.path.join(tempfile.gettempdir(), "cinepipe-fail-once")
        os.makedirs(folder, exist_ok=True)
        seen = os.path.join(folder, hashlib.sha256(key.encode()).hexdigest())
        try:
            with open(seen, "x"):
                pass
        except FileExistsError:
            return (images,)
        raise RuntimeError(f"deliberate first-attempt failure for key {key!r}")


class CinepipeTestNothing:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "nothing"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def nothing(self, images):
        return {}


class CinepipeTestSleep:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 600.0, "step": 0.1}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sleep"
    CATEGORY = "testing"

    def sleep(self, images, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(0.05)
        return (images,)


class CinepipeTestSleepUncached(CinepipeTestSleep):
    """CinepipeTestSleep that ComfyUI never answers from its cache: a NaN is unequal to
    itself, so every prompt runs it again (a bench's slowed variant stays slow on every run)."""

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")


NODE_CLASS_MAPPINGS = {
    "CinepipeTestRaise": CinepipeTestRaise,
    "CinepipeTestSleep": CinepipeTestSleep,
    "CinepipeTestSleepUncached": CinepipeTestSleepUncached,
    "CinepipeTestNothing": CinepipeTestNothing,
    "CinepipeTestFailOnce": CinepipeTestFailOnce,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CinepipeTestRaise": "Raise (cinepipe test)",
    "CinepipeTestSleep": "Sleep (cinepipe test)",
    "CinepipeTestSleepUncached": "Sleep, never cached (cinepipe test)",
    "CinepipeTestNothing": "Nothing (cinepipe test)",
    "CinepipeTestFailOnce": "Fail once (cinepipe test)",
}
