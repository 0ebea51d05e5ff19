"""`addons` is not a list of addon objects."""

addons = 42
