"""Short texts the embedder tests share: two on one topic, one on another, one past every token budget."""

SPACE = [
    "The rocket reached orbit after the second stage burn.",
    "The shuttle docked with the space station and the astronauts went on a spacewalk.",
]
MEDICINE = "The doctor prescribed antibiotics for the patient's infection."
# About 480 tokens: longer than MiniLM's 256, so truncation and padding are exercised.
LONG = "Hockey playoffs: the goalie stopped every shot in overtime. " * 40
TEXTS = [*SPACE, MEDICINE, LONG]
