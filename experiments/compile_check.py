"""Does ``torch.compile`` speed up retort's training step on this CPU? Issue #16 asks for it as an
opt-in flag, kept only if it helps. This times the teacher's fine-tuning step (BERT 6x384 classifier,
forward + backward + fused AdamW) on real STS-B batches (length-grouped, dynamic padding, as the loop
makes them), eager against ``torch.compile(dynamic=True)``, in one process, after warm-up; the compile
time is reported apart.

    python experiments/compile_check.py --glue-dir ../shared/data/glue --out docs/data/compile_check.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import Option, add, parser

STEPS = Option("--steps", "timed training steps", type=int, default=40, low=1)


def main(argv: list[str] | None = None) -> None:
    """Time eager and compiled training steps, print both and the ratio, write the JSON."""
    p = parser(__doc__)
    add(p, "glue_dir", STEPS, "warmup", "threads", "out_json", required=["glue_dir"],
        defaults={"warmup": 10, "threads": 2, "out_json": "compile_check.json"})  # fmt: skip
    a = p.parse_args(argv)

    import torch

    from retort.data.batching import batch_order, collate, encode
    from retort.data.tasks import get_task, load_split
    from retort.machine import cpu_label
    from retort.models.hf import load_classifier, load_tokenizer

    torch.set_num_threads(a.threads)
    task = get_task("STS-B")
    tok = load_tokenizer("all-MiniLM-L6-v2")
    data = encode(load_split(task, "train", a.glue_dir), tok, 128)
    batches = batch_order(data.lengths, 16, 0, 0)[: a.warmup + a.steps]
    rows = {}
    for mode in ("eager", "compile"):
        torch.manual_seed(0)
        model = load_classifier("all-MiniLM-L6-v2", task, attn_implementation="sdpa").train()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
        run = torch.compile(model, dynamic=True) if mode == "compile" else model
        times = []
        t_first = time.perf_counter()
        for i, idx in enumerate(batches):
            b = collate(data, idx, tok.pad_token_id or 0)
            t0 = time.perf_counter()
            out = run(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"])
            loss = torch.nn.functional.mse_loss(out.logits[:, 0], b["labels"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
            if i == 0:
                first = time.perf_counter() - t_first
        timed = times[a.warmup :]
        samples = sum(len(idx) for idx in batches[a.warmup :])
        rows[mode] = {"samples_per_s": samples / sum(timed), "first_step_s": first, "warmup_s": sum(times[: a.warmup])}
        print(f"{mode}: {rows[mode]['samples_per_s']:.1f} samples/s, first step {first:.1f}s", flush=True)
    rows["speedup"] = rows["compile"]["samples_per_s"] / rows["eager"]["samples_per_s"]
    rows["cpu"] = cpu_label()
    rows["torch"] = torch.__version__
    print(f"compile / eager: {rows['speedup']:.2f}x")
    Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
