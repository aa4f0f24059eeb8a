"""Multi-process training: `torchrun --nproc_per_node 2` with gloo on CPU runs `all` (3 steps per stage), and both
ranks end every stage with bit-identical weights (each rank writes a digest of its trainable parameters with the
training state); later stages on rank 1 must also see rank 0's exports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backend.checkpoints import load_checkpoint
from training_helpers import synthetic_root

REPO = Path(__file__).resolve().parents[1]


def test_torchrun_two_processes_agree_on_their_weights_in_every_stage(tmp_path_factory, tmp_path):
    data = synthetic_root(tmp_path_factory)
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training.cli", "all", "--data", str(data), "--out", str(out), "--preset", "tiny",
               "--set", "train.steps=3", "--set", "train.batch_size=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for stage in ("vae", "mld", "lcm", "controlnet"):
        state = out / stage / "train_state"
        digests = [(state / f"params_rank{rank}.sha256").read_text() for rank in (0, 1)]
        assert digests[0] == digests[1], stage
        assert load_checkpoint(out / stage / "checkpoint").provenance["steps"] == 3
