"""minbert_core: minBERT, its AdamW, data, multi-task training with PCGrad, and the study around them."""
from .config import BertConfig, override
from .model import BertModel
from .optim import AdamW

__all__ = ["BertConfig", "BertModel", "AdamW", "override"]
__version__ = "0.1.0"
