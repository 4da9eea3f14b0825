"""Every table and reading a chapter shows, one module per chapter, written from the run's own results.

:mod:`.common` (data banner, provenance, a config beside the paper's), :mod:`.datasets` (01), :mod:`.pretraining`
(02), :mod:`.embeddings` (03), :mod:`.classifier` (04), :mod:`.predictions` (05), :mod:`.harmony` (06),
:mod:`.shift` (07), :mod:`.adaptation` (08), :mod:`.performance` (90). The paper's own numbers come from
:mod:`dinoxfer_lib.paper`; nothing here computes an embedding or trains a model.
"""
