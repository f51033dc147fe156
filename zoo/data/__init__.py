"""LightningDataModules for real on-disk formats and the embedded mini sets.

Every module here registers a builder in DATASETS: ``build(cfg) -> ZooDataModule``.
"""
