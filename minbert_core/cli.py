"""The `minbert` command line: one subcommand per job, each a thin wrapper over the Python API."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _cmd_sanity(a: argparse.Namespace) -> int:
    from .sanity import format_table, sanity_table

    rows = sanity_table(checkpoint=a.checkpoint, opt_steps=a.opt_steps)
    print(format_table(rows))
    return 0 if all(r["ok"] for r in rows) else 1


def _cmd_fetch(a: argparse.Namespace) -> int:
    from .data import data_dir
    from .fetch import FetchError, fetch

    dest = Path(a.dest) if a.dest else data_dir()
    try:
        status = fetch(dest, base_url=a.base_url, src_dir=getattr(a, "from"), only=a.only)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, s in status.items():
        print(f"{name:<28} {s}")
    print(f"data in {dest}")
    return 0


def _cmd_stats(a: argparse.Namespace) -> int:
    from .batching import BucketBatchSampler, TokenizedSplit, padding_share, random_batches
    from .data import load_split
    from .tokenizer import load_tokenizer

    split = load_split(a.task, a.split)
    ts = TokenizedSplit.build(split, load_tokenizer(a.checkpoint), max_length=a.max_length)
    L = ts.lengths
    bucketed = padding_share(L, BucketBatchSampler(L, a.batch_size, seed=a.seed).batches())
    rand = padding_share(L, random_batches(len(L), a.batch_size, seed=a.seed))
    print(f"{split.path} ({len(L)} examples, batch size {a.batch_size}, max length {a.max_length})")
    print(f"padded-token share, length-bucketed batches: {bucketed:6.1%}")
    print(f"padded-token share, random batches:          {rand:6.1%}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = argparse.ArgumentParser(prog="minbert", description="minBERT multi-task study toolkit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("sanity", help="model parity with transformers and the AdamW check, as a table")
    s.add_argument("--checkpoint", default="minilm-l6")
    s.add_argument("--opt-steps", type=int, default=1000)
    s.set_defaults(fn=_cmd_sanity)

    d = sub.add_parser("data", help="get and inspect the data files").add_subparsers(dest="data_cmd", required=True)
    f = d.add_parser("fetch", help="download the CS224N data files, verified against their git blob ids")
    f.add_argument("--dest", help="target folder (default: $MINBERT_DATA or ./data)")
    f.add_argument("--from", metavar="DIR", help="copy from a local folder instead of downloading")
    f.add_argument("--base-url", help="download from this URL prefix instead of upstream GitHub")
    f.add_argument("--only", nargs="+", metavar="FILE", help="fetch only these files")
    f.set_defaults(fn=_cmd_fetch)
    st = d.add_parser("stats", help="padded-token share of length-bucketed vs random batches")
    st.add_argument("--task", default="sst")
    st.add_argument("--split", default="train")
    st.add_argument("--batch-size", type=int, default=32)
    st.add_argument("--max-length", type=int, default=128)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--checkpoint", default="minilm-l6")
    st.set_defaults(fn=_cmd_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `minbert` console script."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return a.fn(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
