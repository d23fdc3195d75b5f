"""Importing the training frameworks quietly and on any host: TensorFlow without its start-up chatter on stderr
(`tensorflow_import`) and torchvision on a CPU-only torch (`torchvision_compat`). Below everything that touches a
model, so that data, runners and exports all import frameworks the one way; the frameworks themselves are imported
only when called.
"""
