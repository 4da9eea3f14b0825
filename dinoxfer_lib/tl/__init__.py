"""Tools over embeddings (AnnData): neighbour checks, UMAP, Harmony, mixing scores and domain-shift diagnostics.

- :mod:`.neighbours`: do nearest neighbours share a label (the embeddings chapter's sanity check)?
- :mod:`.config`: :class:`AnalysisConfig`, the ``analysis:`` section of a profile.
- :mod:`.reduce`: PCA and seeded UMAP. :mod:`.harmony`: Harmony on principal components, probe before/after.
- :mod:`.mixing`: LISI, silhouettes, k-NN label accuracy. :mod:`.shift`: Fréchet distance, domain probe.
- :mod:`.domains`: store stages (every domain through every backbone; the transfer matrix). :mod:`.transfer`: the
  transfer matrix and distance against F1. :mod:`.notes`: the chapters' "what we see" text from their numbers.
"""
