"""Benchmarks of retrieval and answers: the `evaluate` command, span metrics (CUAD,
ContractNLI), PubMedQA and the medical-records set, and their loaders.

Uses `ingest` (to load a collection) and `assistant` (to retrieve and answer); no app imports
it.
"""
