"""Prompts of about N tokens (words) with varied text, so no cache can answer them."""

from __future__ import annotations

import random

_WORDS = (
    "river",
    "mountain",
    "lantern",
    "harbor",
    "copper",
    "meadow",
    "silver",
    "engine",
    "orchard",
    "canyon",
    "whisper",
    "glacier",
    "market",
    "thunder",
    "velvet",
    "compass",
    "garden",
    "signal",
    "ember",
    "quarry",
    "falcon",
    "prairie",
    "theory",
    "journey",
    "ladder",
    "marble",
    "summit",
    "beacon",
    "cobalt",
    "island",
    "forest",
    "pepper",
    "timber",
    "crystal",
    "violet",
    "anchor",
    "desert",
    "lemon",
    "rocket",
    "saddle",
    "tunnel",
    "walnut",
    "zebra",
    "maple",
    "ocean",
    "basket",
    "candle",
    "dragon",
    "feather",
    "galaxy",
    "hammer",
    "igloo",
    "jacket",
    "kettle",
    "magnet",
    "needle",
    "oyster",
    "pillow",
    "quilt",
    "ribbon",
    "spider",
    "tulip",
    "umbrella",
    "vessel",
    "window",
    "yarrow",
    "bridge",
    "castle",
    "dolphin",
    "eagle",
    "fountain",
    "giant",
    "horizon",
    "ivory",
    "jungle",
    "koala",
    "lizard",
    "mirror",
    "nectar",
    "olive",
    "parrot",
    "quartz",
    "raven",
    "sapphire",
    "tiger",
    "unicorn",
    "valley",
    "willow",
    "comet",
)

_TASKS = (
    "Write a short story that uses these words:",
    "Summarise the following notes in plain language:",
    "Continue this list with a few more ideas:",
    "Explain how these things could be connected:",
    "Describe a scene that contains the following:",
)


class PromptMaker:
    """Prompt ``i`` is seeded text of ``tokens`` words, different for every request."""

    def __init__(self, tokens: int, seed: int | None = None) -> None:
        self.tokens = tokens
        self._rng = random.Random(seed)

    def make(self, index: int) -> str:
        task = self._rng.choice(_TASKS)
        head = f"[{index}-{self._rng.getrandbits(32):08x}] {task}"
        rest = max(1, self.tokens - len(head.split()))
        return f"{head} {' '.join(self._rng.choices(_WORDS, k=rest))}"
