"""Check that a change to the simulator leaves every figure as it was, and time it.

Runs the same workloads on the simulator of a base commit (extracted with ``git archive``
into a temporary directory) and on the working tree's, one process per run, alternating
base and head, and compares ``SimResult.to_json(timing=False)`` exactly (a float that moves
in its last bit is a difference). Prints requests per wall second, best of ``--repeat``.

    python bench/sim_identical.py --base main [--repeat 3] [--only request]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "examples" / "simulate-fleet.yaml"
EIGHT = ROOT / "bench" / "fleets" / "eight-replicas.yaml"
TRACE = ROOT / "examples" / "traces" / "AzureLLMInferenceTrace_code.csv"

# label -> (fleet, fidelity, WorkloadOptions keywords)
WORKLOADS: dict[str, tuple[Path, str, dict[str, float]]] = {
    "synthetic 0.2 d @5/s, request": (FLEET, "request", {"days": 0.2, "mean_rate": 5.0}),
    "synthetic 0.2 d @5/s, iteration": (FLEET, "iteration", {"days": 0.2, "mean_rate": 5.0}),
    "code trace x20, 8 replicas, request": (EIGHT, "request", {"rate": 20.0}),
    "code trace x20, 8 replicas, iteration": (EIGHT, "iteration", {"rate": 20.0}),
    "code trace, request": (FLEET, "request", {}),
}

CHILD = """
import hashlib, json, sys, time
from pathlib import Path
from tiergate.sim.session import SessionOptions, run_session
from tiergate.sim.workload import WorkloadOptions
fleet, fidelity, trace, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
options = SessionOptions(Path(fleet), WorkloadOptions(Path(trace), **kwargs), fidelity=fidelity)
result = run_session(options)
text = json.dumps(result.to_json(timing=False), sort_keys=True)
print(json.dumps({"sha": hashlib.sha256(text.encode()).hexdigest(),
                  "requests": result.requests_total, "wall": result.wall_s, "json": text}))
"""


def run(src: Path, fleet: Path, fidelity: str, kwargs: dict[str, float]) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(src))
    args = [sys.executable, "-c", CHILD, str(fleet), fidelity, str(TRACE), json.dumps(kwargs)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{src}: {fleet.name} {fidelity} failed:\n{done.stderr}")
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="main")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", default="", help="run the workloads whose label has this")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", options.base, "src"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sources = {"base": Path(tmp) / "src", "head": ROOT / "src"}
        same = True
        for label, (fleet, fidelity, kwargs) in WORKLOADS.items():
            if options.only not in label:
                continue
            best: dict[str, float] = {}
            digests: dict[str, set[str]] = {"base": set(), "head": set()}
            texts: dict[str, str] = {}
            for _ in range(options.repeat):
                for side, src in sources.items():
                    out = run(src, fleet, fidelity, kwargs)
                    rate = float(out["requests"]) / float(out["wall"])  # type: ignore[arg-type]
                    best[side] = max(best.get(side, 0.0), rate)
                    digests[side].add(str(out["sha"]))
                    texts[side] = str(out["json"])
            equal = digests["base"] == digests["head"] and len(digests["base"]) == 1
            same &= equal
            print(
                f"{label:40s} {out['requests']:>8,} req  base {best['base']:9,.0f}/s  "
                f"head {best['head']:9,.0f}/s  x{best['head'] / best['base']:.2f}  "
                f"{'identical' if equal else 'DIFFERENT'}",
                flush=True,
            )
            if not equal:
                base, head = json.loads(texts["base"]), json.loads(texts["head"])
                for key in base:
                    if base[key] != head.get(key):
                        print(f"  differs: {key}", flush=True)
        print("all identical" if same else "SOME DIFFER")
        sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
