"""Looking at what pretraining learned: flagged pairs and their precision (FNSD against reference
selectors), encoder embeddings with UMAP and cluster quality, paired statistics.
"""
