"""cinepipe's ComfyUI nodes: WriteDoneMarker saves a scene's frames and only then writes the
atomic `<prefix>.done` marker that cinepipe's `await-marker` stage waits for.

ComfyUI loads this folder as a custom node package (it reads NODE_CLASS_MAPPINGS). The marker
I/O lives in `marker_io` (standard library only) so that it can be tested without ComfyUI.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
