"""convert.torch2tf: torch.fx graphs translated to TensorFlow ops give torch's numbers."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from convert import torch2tf  # noqa: E402
from edge_ser.errors import ModelError  # noqa: E402


class Mixed(nn.Module):
    """Functional ops, reshapes and layers a compact CRNN-ish model would use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, stride=(1, 2), padding=1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.AvgPool2d(2)
        self.conv1d = nn.Conv1d(48, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(F.relu(self.bn(self.dw(F.relu(self.conv(x))))))  # [N, 6, 10, 8]
        y = y.permute(0, 1, 3, 2).reshape(x.size(0), 48, 10)  # channels x bands as features over time
        z = F.gelu(self.norm(self.conv1d(y).transpose(1, 2)))  # [N, 10, 8]
        pooled = torch.cat([z.mean(dim=1), z.amax(dim=1)], dim=-1)
        return torch.softmax(self.fc(pooled) * 2.0 + 1.0, dim=-1)[:, :3]


def test_mixed_module_matches_torch() -> None:
    torch.manual_seed(0)
    m = Mixed().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    fn = torch2tf.tf_function(m, [tf.TensorSpec([2, 1, 20, 32], tf.float32, name="x")])
    x = np.random.default_rng(0).normal(size=(2, 1, 20, 32)).astype(np.float32)
    assert torch2tf.check_close(m, fn, [x], atol=1e-5) < 1e-5


def test_unsupported_layer_is_named() -> None:
    m = nn.Sequential(nn.Linear(4, 4), nn.GRU(4, 4))
    with pytest.raises(ModelError, match="GRU is not supported"):
        torch2tf.tf_function(m, [tf.TensorSpec([1, 4], tf.float32, name="x")])
