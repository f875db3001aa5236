"""Gymnasium environments with pixel observations; importing this package registers them."""
