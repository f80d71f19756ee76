"""cinepipe's ComfyUI nodes: WriteDoneMarker saves a scene's frames and only then writes the
atomic `<prefix>.done` marker that cinepipe's `await-marker` stage waits for; SceneCardFrames
draws a scene's frames from its text and mood without a model (the demo's renderer).

ComfyUI loads this folder as a custom node package (it reads NODE_CLASS_MAPPINGS). The marker
I/O lives in `marker_io` (standard library only) so that it can be tested without ComfyUI.
"""

from . import nodes, scene_card

NODE_CLASS_MAPPINGS = {**nodes.NODE_CLASS_MAPPINGS, **scene_card.NODE_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS = {
    **nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **scene_card.NODE_DISPLAY_NAME_MAPPINGS,
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
