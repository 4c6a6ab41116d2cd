"""Speed of every local runtime x precision x token budget, against ``SentenceTransformer.encode``, in one run.

The same cleaned train posts for every path: ``--posts`` long ones (over 1,500
characters) and as many short ones (under 300). Rounds are interleaved (each
path once per round, the best round kept), so every ratio sees the same
machine load. Columns: texts/s, the ratio to plain ``SentenceTransformer.encode``
(fp32, PyTorch, the model's own token budget, batches of 32), the mean and
minimum cosine to that reference's vectors, and the share of this CPU's
measured matrix-multiply peak in the path's dtype (FLOPs per text from the
token counts x texts/s over a timed GEMM: fp32 with PyTorch, int8 with ONNX
Runtime's MatMulInteger, bf16 with PyTorch).

    python -m benchmarks.embed_speed [--posts 64] [--rounds 2] [--model all-MiniLM-L6-v2] [--runtimes openvino torch]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from functools import partial

import numpy as np

from benchmarks.quality import load_split
from tasks.embed._local import RUNTIMES, LocalEmbedder, load_model
from tasks.embed.models import MODELS, ModelSpec, check_model_settings, cpu_dtype, installed_state
from tasks.errors import InputError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def gemm_peak(dtype: str, n: int = 1024, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n x n matrix product in ``dtype`` on this process's threads."""
    if dtype == "int8":
        import onnxruntime
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b"], ["c"])],
            "gemm",
            [
                helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                helper.make_tensor_value_info("b", TensorProto.INT8, [n, n]),
            ],
            [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = {"a": np.ones((n, n), np.uint8), "b": np.ones((n, n), np.int8)}
        run = lambda: session.run(None, feed)  # noqa: E731
    else:
        import torch

        kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        a, b = torch.ones(n, n, dtype=kind), torch.ones(n, n, dtype=kind)
        run = lambda: a @ b  # noqa: E731
    run()
    best = min(_timed(run) for _ in range(repeats))
    return 2 * n**3 / best


def this_machine() -> str:
    """Today's date, the CPU's model and the flags that decide the fast paths, cores, load and Python."""
    cpuinfo = open("/proc/cpuinfo").read()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "?")
    flags = sorted({"avx2", "avx512_vnni", "avx512_bf16", "amx_bf16"} & set(cpuinfo.split()))
    return (
        f"{date.today()}, {cpu} ({' '.join(flags)}), {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"{platform.python_version()}"
    )


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def flops_per_text(model, texts: list[str], max_tokens: int) -> float:
    """Mean FLOPs per text: 2 x Linear weights x tokens, plus attention's 4 x layers x tokens^2 x width."""
    import torch

    transformer = model[0].model if hasattr(model[0], "model") else model[0].auto_model
    config = transformer.config
    linear = sum(m.weight.numel() for m in transformer.modules() if isinstance(m, torch.nn.Linear))
    tokens = [min(len(ids), max_tokens) for ids in model.tokenizer(texts)["input_ids"]]
    layers, width = config.num_hidden_layers, config.hidden_size
    return float(np.mean([2 * linear * t + 4 * layers * t * t * width for t in tokens]))


def with_budget(embedder: LocalEmbedder, max_tokens: int, texts: list[str]) -> np.ndarray:
    """``embedder`` reading ``max_tokens`` per text, as ``--max-tokens`` sets it at load.

    One loaded model serves every budget: a copy per budget would hold EmbeddingGemma
    (1.2 GB in float32) once for each runtime x precision x budget.
    """
    embedder.model.max_seq_length = max_tokens
    return embedder.embed(texts)


def measurable(spec: ModelSpec, runtime: str, max_tokens: int | None = None) -> bool:
    """Whether the command line runs ``spec`` on ``runtime`` at ``max_tokens``; prints why not."""
    try:
        check_model_settings(spec, runtime=runtime, max_tokens=max_tokens)
    except InputError as refusal:
        print(f"not measured: {refusal}")
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="all-MiniLM-L6-v2", choices=list(MODELS))
    parser.add_argument("--budgets", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    args = parser.parse_args()
    spec = MODELS[args.model]
    if installed_state(spec) != "verified":
        raise SystemExit(f"{spec.name} is not fetched: python -m tasks.embed.models fetch {spec.name}")

    posts = load_split("train").sample(frac=1.0, random_state=0)["text"]
    sets = {
        "long": posts[posts.str.len() > 1500].head(args.posts).tolist(),
        "short": posts[posts.str.len() < 300].head(args.posts).tolist(),
    }
    from sentence_transformers import SentenceTransformer

    from tasks.embed.models import model_path

    reference = SentenceTransformer(str(model_path(spec)), device="cpu")
    if spec.max_seq_length:
        reference.max_seq_length = spec.max_seq_length
    own_budget = reference.max_seq_length
    prompt = {"prompt_name": spec.prompt_name} if spec.prompt_name else {}

    def encode(texts):
        return reference.encode(texts, batch_size=32, normalize_embeddings=True, **prompt)

    paths = {"encode": encode}
    dtypes = {"encode": "fp32"}
    for runtime in args.runtimes:
        if not measurable(spec, runtime):
            continue
        budgets = [budget for budget in args.budgets if measurable(spec, runtime, budget)]
        for precision in ("fp32", "int8"):
            # ONNX Runtime runs its export in float32; PyTorch and OpenVINO in bf16 where the model prefers it.
            native = cpu_dtype(spec) if runtime != "onnx" and precision == "fp32" else "float32"
            dtype = "int8" if precision == "int8" else {"bfloat16": "bf16"}.get(native, "fp32")
            embedder = LocalEmbedder(spec.name, runtime=runtime, precision=precision)
            embedder.embed(sets["short"][:4])  # load (and export, the first time) outside the timing
            for budget in budgets:
                # Named by what runs: --precision fp32 is bf16 where the model prefers it and the CPU has it.
                name = f"{runtime} {dtype} {budget}"
                paths[name] = partial(with_budget, embedder, budget)
                dtypes[name] = dtype
    peaks = {dtype: gemm_peak(dtype) for dtype in set(dtypes.values())}
    flops = {
        (name, kind): flops_per_text(
            reference, texts, int(name.split()[-1]) if name != "encode" else own_budget
        )
        for kind, texts in sets.items()
        for name in paths
    }
    best: dict[tuple[str, str], float] = {}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for _ in range(args.rounds):
        for kind, texts in sets.items():
            for name, run in paths.items():
                started = time.perf_counter()
                vectors[name, kind] = np.asarray(run(texts))
                seconds = time.perf_counter() - started
                best[name, kind] = min(best.get((name, kind), np.inf), seconds)

    print(
        f"{this_machine()}; {spec.name}, {args.posts} long + {args.posts} short posts, "
        f"best of {args.rounds} interleaved rounds; GEMM peaks: "
        + ", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in sorted(peaks.items()))
    )
    print("| texts | runtime precision tokens | texts/s | x encode | cosine mean (min) | share of peak |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, texts in sets.items():
        for name in paths:
            rate = len(texts) / best[name, kind]
            cosines = np.sum(vectors[name, kind] * vectors["encode", kind], axis=1)
            share = flops[name, kind] * rate / peaks[dtypes[name]]
            label = f"encode (PyTorch fp32 {own_budget})" if name == "encode" else name
            print(
                f"| {kind} | {label} | {rate:.1f} | {best['encode', kind] / best[name, kind]:.2f} | "
                f"{cosines.mean():.4f} ({cosines.min():.4f}) | {share:.0%} |"
            )
    load_model.cache_clear()


if __name__ == "__main__":
    main()
