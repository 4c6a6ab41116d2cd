"""The plan's token estimate against Gemini's tokenizer, on what a Gemini run actually sends.

``--plan`` estimates Gemini's input tokens as characters / 4 (no offline
tokenizer ships with the SDK: it downloads one). This benchmark checks that
figure: for each sample it makes the plan, runs the Gemini embedder against the
local fake server (``tests/gemini_server.py``), and counts the tokens of the
texts the server received with Gemini's own tokenizer, the Gemma 3 SentencePiece
model. google-genai's ``LocalTokenizer`` counts Gemini tokens with that model
and pins its sha256; EmbeddingGemma ships the same file, so once it is fetched
(``python -m tasks.embed.models fetch embeddinggemma-300m``) nothing is
downloaded. Needs sentencepiece: ``pip install -e ".[bench]"``.

    python -m benchmarks.token_estimate               # the tutorial's sample (seeds 0-4) and the whole corpus

Prints one row per sample: texts, estimated and counted tokens, their ratio, the
texts still over Gemini's 2,048-token input limit after the embedder's cut, and
the spread of characters per token over single texts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.quality import ARCHIVE, WHOLE, draw, load_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

KEY = "benchmark-key"
TOKENIZER_FILE = "tokenizer.model"
# The file google-genai 3.6.1 pins for Gemini's tokenizer ("gemma3" in google/genai/_local_tokenizer_loader.py,
# which imports protobuf to read it): its LocalTokenizer counts every Gemini 2.x and 3 model's tokens with it.
GEMINI_TOKENIZER_SHA256 = "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c"


def gemini_tokenizer(models_dir: Path | None):
    """Gemini's SentencePiece tokenizer, from EmbeddingGemma's folder, checked against the SDK's pinned sha256."""
    try:
        import sentencepiece
    except ImportError:
        raise SystemExit('This benchmark needs sentencepiece: pip install -e ".[bench]"') from None
    from tasks.embed.models import MODELS, model_path

    path = model_path(MODELS["embeddinggemma-300m"], models_dir) / TOKENIZER_FILE
    if not path.exists():
        raise SystemExit(f"{path} is missing: python -m tasks.embed.models fetch embeddinggemma-300m")
    if hashlib.sha256(path.read_bytes()).hexdigest() != GEMINI_TOKENIZER_SHA256:
        raise SystemExit(f"{path} is not the tokenizer google-genai counts Gemini tokens with")
    return sentencepiece.SentencePieceProcessor(model_file=str(path))


def measure(label: str, texts: list[str], server, tokenizer) -> dict:
    """Plan ``texts`` as a run would, send them to the fake server, count what it received."""
    from tasks.embed._gemini import MAX_INPUT_TOKENS, GeminiEmbedder
    from tasks.embed.plan import look_up, plan_embedding

    embedder = GeminiEmbedder(KEY, requests_per_minute=1_000_000, tokens_per_minute=1_000_000_000)
    plan = plan_embedding(texts, embedder, look_up(texts, None), batch_size=None, throughput_dir=None)
    received_before = len(server.texts)
    embedder.embed(texts)
    received = server.texts[received_before:]
    per_text = np.array([len(ids) for ids in tokenizer.encode(received)])
    chars_per_token = np.array([len(text) for text in received]) / np.maximum(per_text, 1)
    counted = int(per_text.sum())
    return {
        "sample": label,
        "texts": len(received),
        "estimated": plan.estimated_tokens,
        "counted": counted,
        "ratio": plan.estimated_tokens / counted,
        "over_limit": int((per_text > MAX_INPUT_TOKENS).sum()),
        "chars_per_token": np.percentile(chars_per_token, [5, 50, 95]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=Path(os.environ.get("NEWSGROUPS_ARCHIVE", ARCHIVE)))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args()

    from gemini_server import FakeGemini

    tokenizer = gemini_tokenizer(args.models_dir)
    train, whole = load_split("train", archive=args.archive), load_split(WHOLE, archive=args.archive)
    rows = []
    with FakeGemini(api_key=KEY, default_dimensions=768) as server:
        os.environ["GOOGLE_GEMINI_BASE_URL"] = server.url
        for seed in args.seeds:
            texts = draw(train, "train", seed)["text"].tolist()
            rows.append(measure(f"tutorial sample, seed {seed}", texts, server, tokenizer))
        rows.append(measure("whole corpus", whole["text"].tolist(), server, tokenizer))
    print(
        f"{'sample':<26} {'texts':>7} {'estimated':>11} {'counted':>11} {'ratio':>6} {'over 2,048':>10}  chars/token p5/p50/p95"
    )
    for row in rows:
        p5, p50, p95 = row["chars_per_token"]
        print(
            f"{row['sample']:<26} {row['texts']:>7,} {row['estimated']:>11,} {row['counted']:>11,} "
            f"{row['ratio']:>6.3f} {row['over_limit']:>10}  {p5:.2f} / {p50:.2f} / {p95:.2f}"
        )


if __name__ == "__main__":
    main()
