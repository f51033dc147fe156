"""Distillation methods: one file, one LightningModule, registered in METHODS."""
