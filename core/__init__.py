"""The engine of the FALSE workbench (torch; never streamlit or gradio), grouped by role:

``ssl`` (contrastive pretraining with FALSE), ``seg`` (segmentation: fine-tuning, probe, evaluation, comparison,
segmenting images), ``store`` (run folders, locks, lifecycle, launch, checkpoints, catalog), ``analysis`` (flagged
pairs, embeddings, statistics), ``imaging`` (image files and work budgets), ``data`` (data sets), ``config``
(validated configs), plus ``device`` and ``cli`` (``false-wb``). ``python -m core.<command>`` runs each command
line (pretrain, finetune, compare, probe, segment, export, evaluate, fn_report, fingerprint, track).
"""
