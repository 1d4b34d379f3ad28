"""Where and how the work runs: devices and stage measurements, torch.distributed, accuracy."""
