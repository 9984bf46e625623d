"""Training: the LightningModule, its losses, schedules, checks, callbacks and run folders."""
