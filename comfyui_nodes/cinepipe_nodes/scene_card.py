"""The SceneCardFrames node: a scene's frames without a model, drawn from its text and mood.

The model-free demo needs frames that carry the story: each frame shows the scene's prompt as
text on a background coloured by its mood, with a disc that moves across the frames (so no two
consecutive frames are equal), its path set by the text and mood (so two scenes that differ in
either move differently). Identical text and mood give identical frames, which is what cinepipe's cross-scene
frame check is there to catch. Pillow draws; torch is needed only to hand ComfyUI an IMAGE.
"""

import colorsys
import hashlib
import math

# Mood words and their background colours (RGB). A mood names one of these when one of its
# words is a key here; any other mood gets a colour from its hash.
MOOD_COLOURS = {
    "calm": (40, 80, 140),
    "peaceful": (50, 120, 90),
    "serene": (60, 130, 150),
    "hopeful": (200, 140, 50),
    "joyful": (220, 180, 40),
    "happy": (220, 180, 40),
    "warm": (190, 100, 50),
    "tense": (140, 30, 30),
    "angry": (170, 20, 20),
    "dark": (30, 25, 45),
    "eerie": (70, 40, 100),
    "mysterious": (80, 50, 120),
    "sad": (70, 80, 100),
    "melancholy": (80, 90, 110),
    "lonely": (60, 70, 90),
    "quiet": (90, 100, 110),
}

MAX_SIDE = 2048
MAX_FRAMES = 1000


def _digest(text):
    return hashlib.sha256(text.encode("utf-8")).digest()


def mood_colour(mood):
    """The background colour of a mood: a listed word's colour, else one from the mood's hash
    (a mid-dark hue, so white text stays readable)."""
    words = "".join(c if c.isalnum() else " " for c in (mood or "").lower()).split()
    for w in words:
        if w in MOOD_COLOURS:
            return MOOD_COLOURS[w]
    h = _digest(" ".join(words))[0] / 255.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.6, 0.55)
    return (int(r * 255), int(g * 255), int(b * 255))


def _wrap(draw, text, font, width):
    """Greedy word wrap to `width` pixels."""
    lines, line = [], ""
    for word in (text or "").split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def render_frames(text, mood, width=256, height=144, count=25):
    """The scene's frames as RGB PIL images: background from the mood, the text wrapped at the
    top, a disc moving left to right on a path set by the hash of the text and mood."""
    # Imported here so that importing the package (the stdlib-only marker tests do) needs no
    # Pillow.
    from PIL import Image, ImageDraw, ImageFont

    width = max(16, min(int(width), MAX_SIDE))
    height = max(16, min(int(height), MAX_SIDE))
    count = max(1, min(int(count), MAX_FRAMES))
    background = mood_colour(mood)
    ink = (255, 255, 255) if sum(background) < 3 * 150 else (0, 0, 0)
    disc = tuple(255 - c for c in background)
    # The disc's path comes from the text and the mood: scenes that differ in either move
    # differently, which a perceptual hash (blind to tint) sees.
    seed = _digest(f"{text or ''}\n{mood or ''}")
    phase = seed[1] / 255.0 * 2 * math.pi
    lane = 0.55 + 0.3 * seed[2] / 255.0  # the disc's height, as a share of the frame
    radius = max(3, height // 6)
    font = ImageFont.load_default()

    card = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(card)
    margin = max(2, width // 32)
    y = margin
    for line in _wrap(draw, text, font, width - 2 * margin):
        draw.text((margin, y), line, fill=ink, font=font)
        y += 12
    # The mood's name in the bottom corner, so a person sees which colour is which mood.
    draw.text((margin, height - 12 - margin // 2), (mood or "")[:40], fill=ink, font=font)

    frames = []
    for i in range(count):
        frame = card.copy()
        t = i / max(1, count - 1)
        cx = radius + t * (width - 2 * radius)
        cy = height * lane + math.sin(phase + 2 * math.pi * t) * height * 0.12
        ImageDraw.Draw(frame).ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius), fill=disc
        )
        frames.append(frame)
    return frames


class SceneCardFrames:
    """Frames for one scene from its text and mood: no model, a CPU and Pillow."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"default": "", "multiline": True}),
                "mood": ("STRING", {"default": "calm"}),
                "width": ("INT", {"default": 256, "min": 16, "max": MAX_SIDE}),
                "height": ("INT", {"default": 144, "min": 16, "max": MAX_SIDE}),
                "frames": ("INT", {"default": 25, "min": 1, "max": MAX_FRAMES}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "render"
    CATEGORY = "cinepipe"
    DESCRIPTION = "Draws a scene's text on its mood's colour with a moving disc, one image per frame."

    def render(self, text, mood, width=256, height=144, frames=25):
        import numpy as np
        import torch

        images = render_frames(text, mood, width, height, frames)
        batch = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
        return (torch.from_numpy(batch),)


NODE_CLASS_MAPPINGS = {"SceneCardFrames": SceneCardFrames}
NODE_DISPLAY_NAME_MAPPINGS = {"SceneCardFrames": "Scene Card Frames (cinepipe)"}
