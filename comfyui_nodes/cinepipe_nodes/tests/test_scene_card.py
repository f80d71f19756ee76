"""Tests of the SceneCardFrames node: its frames carry the scene (text, mood), move, and are
the same only for the same scene."""

import unittest

from cinepipe_nodes import scene_card


def pixels(im):
    return im.tobytes()


class RenderFrames(unittest.TestCase):
    def test_the_same_scene_gives_the_same_frames(self):
        a = scene_card.render_frames("a keeper on the moon", "calm", 96, 64, 5)
        b = scene_card.render_frames("a keeper on the moon", "calm", 96, 64, 5)
        self.assertEqual([pixels(f) for f in a], [pixels(f) for f in b])

    def test_another_text_or_mood_gives_other_frames(self):
        a = scene_card.render_frames("a keeper on the moon", "calm", 96, 64, 5)
        b = scene_card.render_frames("dust storms over the crater", "calm", 96, 64, 5)
        c = scene_card.render_frames("a keeper on the moon", "tense", 96, 64, 5)
        for other in (b, c):
            self.assertTrue(all(pixels(x) != pixels(y) for x, y in zip(a, other)))

    def test_consecutive_frames_differ_and_have_the_size_asked_for(self):
        frames = scene_card.render_frames("a keeper", "calm", 80, 48, 25)
        self.assertEqual(len(frames), 25)
        self.assertEqual(frames[0].size, (80, 48))
        self.assertEqual(frames[0].mode, "RGB")
        for x, y in zip(frames, frames[1:]):
            self.assertNotEqual(pixels(x), pixels(y))

    def test_the_background_is_the_mood_s_colour(self):
        frame = scene_card.render_frames("", "Calm, quiet", 64, 64, 1)[0]
        # The top-right corner: no text, no disc.
        self.assertEqual(frame.getpixel((63, 0)), scene_card.MOOD_COLOURS["calm"])
        # An unlisted mood: a colour from its hash, the same every time.
        self.assertEqual(scene_card.mood_colour("wistful"), scene_card.mood_colour("Wistful"))
        self.assertNotEqual(scene_card.mood_colour("wistful"), scene_card.mood_colour("giddy"))

    def test_sizes_and_counts_are_bounded(self):
        frames = scene_card.render_frames("x", "calm", 10**6, 1, 10**6)
        self.assertEqual(len(frames), scene_card.MAX_FRAMES)
        self.assertEqual(frames[0].size, (scene_card.MAX_SIDE, 16))


if __name__ == "__main__":
    unittest.main()
