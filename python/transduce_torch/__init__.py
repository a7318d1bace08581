"""transduce-torch: the PyTorch side of Transduce (encoder–decoder models for .NET).

Transduce's models in PyTorch with Transduce's parameter names (model), its checkpoint format (checkpoint), the token
shards written by `transduce prepare` and the Trainer's batches (data), greedy decoding of ids (generate), and a
DistributedDataParallel trainer for torchrun (train). See python/README.md.
"""

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, read_config, read_safetensors, write_safetensors  # noqa: E402
from .model import BOS_ID, EOS_ID, PAD_ID, UNK_ID, build_model  # noqa: E402

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID", "build_model", "load_checkpoint", "read_config", "read_safetensors",
           "write_safetensors"]
