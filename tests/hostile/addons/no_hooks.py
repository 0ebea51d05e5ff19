"""Defines nothing a proxy could call."""

speed = 3
