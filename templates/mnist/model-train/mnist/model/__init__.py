"""MNIST training bundle: `train` is the entry point, `utils` its helpers."""
