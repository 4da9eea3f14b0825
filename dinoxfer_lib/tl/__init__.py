"""Tools over embeddings (AnnData): neighbour checks, and later UMAP, Harmony and domain-shift diagnostics."""
