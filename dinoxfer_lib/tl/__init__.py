"""Tools over embeddings (AnnData or arrays): neighbour checks, UMAP, Harmony, mixing scores, domain shift.

Pure computation: nothing here reads or writes the run store (the stages that do are in
:mod:`dinoxfer_lib.pipeline`).

- :mod:`.neighbours`: do nearest neighbours share a label (the embeddings chapter's sanity check)?
- :mod:`.config`: :class:`AnalysisConfig`, the ``analysis:`` section of a profile.
- :mod:`.reduce`: PCA and seeded UMAP. :mod:`.harmony`: Harmony on principal components, probe before/after.
- :mod:`.mixing`: LISI, silhouettes, k-NN label accuracy. :mod:`.shift`: Fréchet distance, domain probe.
- :mod:`.transfer`: the transfer matrix and distance against F1.
"""
