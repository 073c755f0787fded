"""The reference numbers: Tables 1-3 of "Improving minBERT and Its Downstream Tasks" (Yang & Dange,
CS224N), bert-base-uncased on one NVIDIA T4, full data. Dev-set scores, as printed in the report."""
from __future__ import annotations

PAPER_MODEL = "bert-base-uncased (paper, full data, NVIDIA T4)"

# Table 1: dev accuracy; rows are settings, columns {Pretrain,Finetune}-{SST,CFIMDB}; None = NA.
TABLE1: dict[str, dict[str, float | None]] = {
    "Default": {"Pretrain-SST": 0.402, "Finetune-SST": 0.525, "Pretrain-CFIMDB": 0.784, "Finetune-CFIMDB": 0.971},
    "lr=1e-5 (pretrain), 1e-3 (finetune)": {"Pretrain-SST": 0.316, "Finetune-SST": 0.262,
                                            "Pretrain-CFIMDB": 0.576, "Finetune-CFIMDB": 0.502},
    "P dropout=0.1": {"Pretrain-SST": None, "Finetune-SST": 0.52, "Pretrain-CFIMDB": None, "Finetune-CFIMDB": 0.976},
    "P dropout=0.5": {"Pretrain-SST": None, "Finetune-SST": 0.523, "Pretrain-CFIMDB": None, "Finetune-CFIMDB": 0.967},
    "batch=16": {"Pretrain-SST": None, "Finetune-SST": 0.52, "Pretrain-CFIMDB": None, "Finetune-CFIMDB": 0.971},
    "batch=64": {"Pretrain-SST": None, "Finetune-SST": 0.515, "Pretrain-CFIMDB": None, "Finetune-CFIMDB": 0.959},
    "seed=21111": {"Pretrain-SST": None, "Finetune-SST": 0.517, "Pretrain-CFIMDB": None, "Finetune-CFIMDB": 0.955},
    "seed=100": {"Pretrain-SST": None, "Finetune-SST": 0.528, "Pretrain-CFIMDB": None, "Finetune-CFIMDB": 0.963},
}
TABLE1_COLUMNS = ["Pretrain-SST", "Finetune-SST", "Pretrain-CFIMDB", "Finetune-CFIMDB"]

# Tables 2 and 3: rows are metrics, columns are models.
METRIC_ROWS = {"sst": "SST dev Acc.", "para": "PD dev Acc.", "sts": "STS dev Cor.", "overall": "Overall dev Score"}
TABLE2: dict[str, dict[str, float]] = {
    "Original": {"sst": 0.532, "para": 0.385, "sts": 0.130, "overall": 0.494},
    "Combined Loss": {"sst": 0.520, "para": 0.625, "sts": 0.557, "overall": 0.641},
    "Combined Loss w. Gradient Surgery": {"sst": 0.571, "para": 0.826, "sts": 0.871, "overall": 0.759},
}
TABLE3: dict[str, dict[str, float]] = {
    "Original": {"sst": 0.517, "para": 0.826, "sts": 0.871, "overall": 0.759},
    "With bi-LSTM": {"sst": 0.507, "para": 0.827, "sts": 0.872, "overall": 0.757},
    "With bi-LSTM and task specific": {"sst": 0.521, "para": 0.817, "sts": 0.871, "overall": 0.758},
}

# Tables 2 and 3 by number (Table 4, every gradient strategy, is ours: the paper has no numbers for it)
MULTITASK_TABLES: dict[int, dict[str, dict[str, float]]] = {2: TABLE2, 3: TABLE3}
