"""Run one training job from a JSON config (used by test_training as a killable subprocess)."""
import json
import sys
from pathlib import Path

import torch

from bench.train import train

torch.set_num_threads(1)
cfg = json.loads(Path(sys.argv[1]).read_text())
train("resume-test", cfg, Path(sys.argv[2]), progress=False)
