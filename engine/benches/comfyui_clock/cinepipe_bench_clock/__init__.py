"""Bench-only ComfyUI extension: stamps the server's own clock on its progress messages.

Loaded by `cargo bench --bench comfyui_scene` (never installed by `cinepipe install-node`).
It adds no node: it wraps `PromptServer.send_sync` so that each `execution_start`,
`executing` and `execution_success` message of a prompt is also appended, with
`time.time_ns()` taken when ComfyUI hands it to its event loop, to the JSON-lines file named
by `CINEPIPE_BENCH_CLOCK_LOG`. That is the moment ComfyUI starts and finishes a prompt, on the
clock the engine also reads, so the bench can tell ComfyUI's time from the engine's.
"""

import json
import os
import time

import server

_LOG = os.environ.get("CINEPIPE_BENCH_CLOCK_LOG")
_EVENTS = ("execution_start", "executing", "execution_success", "execution_cached")

if _LOG:
    _log = open(_LOG, "a", buffering=1)
    _send_sync = server.PromptServer.send_sync

    def send_sync(self, event, data, sid=None):
        t_ns = time.time_ns()
        if event in _EVENTS and isinstance(data, dict):
            _log.write(json.dumps({
                "event": event,
                "prompt_id": data.get("prompt_id"),
                "node": data.get("node"),
                "t_ns": t_ns,
            }) + "\n")
        return _send_sync(self, event, data, sid)

    server.PromptServer.send_sync = send_sync

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
