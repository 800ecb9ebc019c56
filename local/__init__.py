"""The local runtime behind `make run`: template.yaml's functions served on one machine."""
