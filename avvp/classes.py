"""The 25 LLP event classes, in the LLP order (the order of every (.., 25, ..) axis in the toolkit)."""

CLASSES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm",
    "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner",
    "Baby_laughter", "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar",
    "Telephone_bell_ringing", "Baby_cry_infant_cry", "Blender", "Clapping",
)  # fmt: skip
NUM_CLASSES = len(CLASSES)
NUM_SNIPPETS = 10
"""Snippets per video: LLP videos are 10 s long, cut into 1-second snippets."""
STREAMS: tuple[str, ...] = ("audio", "visual", "motion")
"""The feature streams of a video (VGGish, ResNet-152, R(2+1)D in the LLP release): what a parser reads, and the
pretrained encoder's token types in this order."""
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}
