"""Declarative protocols: YAML games and discussions compiled into AutoGen teams."""
