"""Executors that run builds, trainings, endpoints and notebooks (local, docker, kubernetes)."""
