"""Configs of the study binary."""
