"""The PyTorch peer of `cargo xtask bench-runner`: the runner's default model in plain, eager PyTorch on the CPU.

Same architecture as crates/runner/src/model.rs (token and position embeddings, pre-norm blocks of causal
self-attention with a fused qkv Linear with bias and an MLP 4x with GELU (tanh approximation), LayerNorm
eps 1e-5 with bias, a final norm and an output head tied to the token embedding, vocabulary 257, no
dropout), loaded with the very weights the candle run used, so that both generate the same suggestions.

It measures, like `cargo run --release -p slope-runner --example bench`:
- SFT training throughput: batch x seq of real tokens, loss on the completion part only, AdamW (betas 0.9,
  0.95, eps 1e-8, weight decay 0.01 on matrices only), gradient clipping at 1.0, `loss.item()` every step;
  warm-up steps excluded from the timing;
- the latency of one greedy suggestion of up to 16 bytes with a key/value cache, from the same contexts.

Prints one JSON line. The main figures use explicit attention (the same operations as the candle model);
`tokens_per_s_sdpa` is the same training with PyTorch's fused `scaled_dot_product_attention`, reported
beside it. No torch.compile.
"""

import argparse
import json
import math
import os
import statistics
import struct
import sys
import time
import warnings

# torch's wheel asks for NumPy, which this benchmark does not use.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

EOS = 256


def load_safetensors(path):
    """A safetensors file as a dict of float32 tensors, read without the safetensors package."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise SystemExit(f"{name}: dtype {meta['dtype']} is not F32")
        start, end = meta["data_offsets"]
        t = torch.frombuffer(bytearray(data[start:end]), dtype=torch.float32)
        out[name] = t.reshape(meta["shape"]).clone()
    return out


class Block(nn.Module):
    def __init__(self, d, n_head, sdpa):
        super().__init__()
        self.n_head, self.sdpa = n_head, sdpa
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x, mask, cache=None):
        b, t, d = x.shape
        nh, hd = self.n_head, d // self.n_head
        qkv = self.attn(self.ln1(x)).view(b, t, 3, nh, hd)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat([cache[0], k], 2)
                v = torch.cat([cache[1], v], 2)
            cache[0], cache[1] = k, v
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            if mask is not None:
                att = att + mask
            y = torch.softmax(att, dim=-1) @ v
        y = y.transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, cfg, sdpa=False):
        super().__init__()
        d = cfg["d_model"]
        self.cfg = cfg
        self.wte = nn.Embedding(cfg["vocab_size"], d)
        self.wpe = nn.Embedding(cfg["ctx_len"], d)
        self.blocks = nn.ModuleList(Block(d, cfg["n_head"], sdpa) for _ in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def load(self, tensors):
        names = {"wte.weight": "wte", "wpe.weight": "wpe", "ln_f.weight": "ln_f.w", "ln_f.bias": "ln_f.b"}
        parts = {
            "ln1": "ln1", "attn": "attn", "proj": "attn.proj", "ln2": "ln2", "fc": "mlp.fc", "mlp_proj": "mlp.proj",
        }
        for l in range(self.cfg["n_layer"]):
            for ours, theirs in parts.items():
                names[f"blocks.{l}.{ours}.weight"] = f"h.{l:02}.{theirs}.w"
                names[f"blocks.{l}.{ours}.bias"] = f"h.{l:02}.{theirs}.b"
        state = {k: tensors[v] for k, v in names.items()}
        self.load_state_dict(state, strict=True)

    def forward(self, ids, caches=None, offset=0):
        b, t = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(offset, offset + t))
        mask = None
        if t > 1:
            i = torch.arange(t).unsqueeze(1) + offset
            j = torch.arange(offset + t).unsqueeze(0)
            mask = torch.zeros(t, offset + t).masked_fill(j > i, float("-inf"))
        for l, block in enumerate(self.blocks):
            x = block(x, mask, None if caches is None else caches[l])
        return self.ln_f(x) @ self.wte.weight.t()


def param_groups(model):
    """Weight decay on matrices only, as the runner's AdamW does."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}]


def train_throughput(cfg, tensors, args, sdpa):
    torch.manual_seed(1)
    model = Gpt(cfg, sdpa)
    model.load(tensors)
    model.train()
    opt = torch.optim.AdamW(param_groups(model), lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    b, t = args.batch_size, args.seq_len
    # Like the candle run's SFT rows: every sequence is full, the loss covers the completion only.
    mask = torch.zeros(b, t)
    mask[:, t - args.completion :] = 1.0
    gen = torch.Generator().manual_seed(7)
    losses, times = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        seq = torch.randint(0, 256, (b, t + 1), generator=gen)
        inp, tgt = seq[:, :-1], seq[:, 1:]
        logits = model(inp)
        nll = F.cross_entropy(logits.reshape(b * t, -1), tgt.reshape(-1), reduction="none").view(b, t)
        loss = (nll * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - t0)
    timed = times[args.warmup :]
    return {
        "tokens_per_s": b * t * len(timed) / sum(timed),
        "step_ms_median": statistics.median(timed) * 1000,
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }


@torch.inference_mode()
def suggest(model, context, max_bytes):
    ctx_len = model.cfg["ctx_len"]
    max_bytes = max(1, min(max_bytes, ctx_len // 2))
    ids = list(context.encode("utf-8"))[-(ctx_len - max_bytes) :] or [EOS]
    caches = [[None, None] for _ in range(model.cfg["n_layer"])]
    inp = torch.tensor([ids])
    offset, out = 0, []
    while len(out) < max_bytes:
        logits = model(inp, caches, offset)
        offset += inp.shape[1]
        nxt = int(logits[0, -1].argmax())
        if nxt == EOS:
            break
        out.append(nxt)
        inp = torch.tensor([[nxt]])
    return bytes(out).decode("utf-8", errors="ignore")


def latency(cfg, tensors, args):
    model = Gpt(cfg)
    model.load(tensors)
    model.eval()
    with open(args.contexts, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows[: args.warmup]:
        suggest(model, row["context"], args.suggest_bytes)
    times, same, produced = [], 0, 0
    for row in rows:
        t0 = time.perf_counter()
        s = suggest(model, row["context"], args.suggest_bytes)
        times.append((time.perf_counter() - t0) * 1000)
        same += int(s == row.get("suggestion"))
        produced += len(s.encode("utf-8"))
    times.sort()
    return {
        "latency_ms_median": statistics.median(times),
        "latency_ms_p90": times[min(len(times) - 1, math.ceil(0.9 * len(times)) - 1)],
        "suggestions": len(rows),
        "suggestion_bytes_mean": produced / len(rows),
        "same_suggestions_as_candle": same,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", required=True, help="a runner model folder: config.json, model.safetensors")
    p.add_argument("--contexts", required=True, help="JSONL of {context, suggestion} written by the candle bench")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--completion", type=int, default=61, help="scored positions at the end of each sequence")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--suggest-bytes", type=int, default=16)
    p.add_argument("--no-sdpa", action="store_true", help="skip the extra run with scaled_dot_product_attention")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.model_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tensors = load_safetensors(os.path.join(args.model_dir, "model.safetensors"))
    out = {
        "impl": "pytorch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "parameters": sum(t.numel() for t in tensors.values()),
    }
    print("pytorch: training (explicit attention)", file=sys.stderr)
    out.update(train_throughput(cfg, tensors, args, sdpa=False))
    if not args.no_sdpa:
        print("pytorch: training (scaled_dot_product_attention)", file=sys.stderr)
        out["tokens_per_s_sdpa"] = train_throughput(cfg, tensors, args, sdpa=True)["tokens_per_s"]
    print("pytorch: suggestions", file=sys.stderr)
    out.update(latency(cfg, tensors, args))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
