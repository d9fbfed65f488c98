"""Sentiment Transfer Lab engine: fine-tune, transfer and evaluate sentiment classifiers.

Never imports streamlit: the app is a client of this package, like the command line.
"""

import os

# Library chatter (load reports, tokenizer length warnings) buries the run log; errors still show.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

__version__ = "0.1.0"
