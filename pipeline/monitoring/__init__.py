"""Monitoring: drift between spans and skew against served data per input, prediction drift per
head (drift), and `mimo monitor`'s reading of served requests (monitor)."""
